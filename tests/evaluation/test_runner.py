"""evaluation.runner: what is refused before the first image."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from PIL import Image

from evaluation.runner import check_replaced_outputs
from utils.cli import ToolError


def args_for(tmp_path, **options) -> argparse.Namespace:
    values = dict(checkpoint=[], data=[str(tmp_path / "data")], anchor=[], output=None, plot=None, figure=None,
                  report=None, baselines=[], force=False)
    values.update(options)
    return argparse.Namespace(**values)


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "data").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "c.png")
    torch.save({"w": torch.zeros(2)}, tmp_path / "mine.pth.tar")
    (tmp_path / "anchor.json").write_text(json.dumps({"name": "A", "results": {"bpp": [1], "psnr-rgb": [30]}}))
    return tmp_path / "mine.pth.tar", tmp_path / "data" / "c.png", tmp_path / "anchor.json"


def test_no_output_is_an_input_even_with_force(tmp_path, inputs):
    ck, image, anchor = inputs
    for options in ({"output": str(ck)}, {"plot": str(image)}, {"figure": str(image)},
                    {"output": str(anchor), "anchor": [str(anchor)]}, {"plot": str(tmp_path / "data" / "c.png")}):
        for force in (False, True):
            with pytest.raises(ToolError, match="is also an input"):
                check_replaced_outputs(args_for(tmp_path, force=force, **options), [ck])
    # a file of the data folder that is not an image is an input as well
    (tmp_path / "data" / "notes.json").write_text("{}")
    with pytest.raises(ToolError, match="is also an input"):
        check_replaced_outputs(args_for(tmp_path, output=str(tmp_path / "data" / "notes.json")), [ck])


def test_an_existing_output_of_another_kind_needs_force(tmp_path, inputs):
    ck, image, _ = inputs
    other_ck = tmp_path / "other.pth.tar"
    other_ck.write_bytes(ck.read_bytes())
    (tmp_path / "rd.png").write_text('{"a": "results file"}')
    cases = [({"output": str(other_ck)}, "--output .* holds a zip archive .a checkpoint.., not JSON"),
             ({"plot": str(tmp_path / "rd.png")}, "--plot .* holds JSON, not a PNG image"),
             ({"output": str(tmp_path / "r.json"), "baselines": ["jpeg"]}, "jpeg results .* holds a PNG image")]
    Image.new("RGB", (8, 8)).save(tmp_path / "r-jpeg.json", format="PNG")
    for options, message in cases:
        with pytest.raises(ToolError, match=message):
            check_replaced_outputs(args_for(tmp_path, **options), [ck])
        check_replaced_outputs(args_for(tmp_path, force=True, **options), [ck])
    # earlier outputs of the same kind are replaced as before
    (tmp_path / "results.json").write_text("{}")
    Image.new("RGB", (8, 8)).save(tmp_path / "old-rd.png")
    check_replaced_outputs(args_for(tmp_path, output=str(tmp_path / "results.json"), plot=str(tmp_path / "old-rd.png")),
                           [ck])
