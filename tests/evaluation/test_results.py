"""Results JSON in CompressAI's format, strict and read back with checks (evaluation/results.py)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from evaluation.results import RDError, read_results, results_document, write_json


def test_results_json_is_sorted_by_rate_strict_and_read_back_by_compressai_plot(tmp_path):
    from compressai.utils.plot.__main__ import main as compressai_plot
    from compressai.utils.plot.__main__ import parse_json_file

    doc = results_document(
        "mine", "d",
        [{"bpp": 0.5, "psnr-rgb": 33.0, "ms-ssim-rgb": 0.98}, {"bpp": 0.2, "psnr-rgb": 29.0, "ms-ssim-rgb": float("nan")}],
        per_image={"x": [{"image": "a.png", "bpp": 0.2}]},
    )
    assert doc["results"]["bpp"] == [0.2, 0.5]
    assert doc["results"]["psnr-rgb"] == [29.0, 33.0]
    assert doc["results"]["ms-ssim-rgb"] == [None, 0.98]  # NaN is not JSON
    path = tmp_path / "sub" / "results.json"
    write_json(path, doc)
    json.loads(path.read_text())  # strict JSON
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left
    parsed = parse_json_file(path, "psnr")
    assert parsed["name"] == "mine" and parsed["xs"] == [0.2, 0.5] and parsed["ys"] == [29.0, 33.0]
    compressai_plot(["-f", str(path), "-o", str(tmp_path / "c.png")])
    assert Image.open(tmp_path / "c.png").size[0] > 100
    assert read_results(path)["per_image"]["x"][0]["image"] == "a.png"


def test_read_results_refuses_bad_files_in_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RDError, match="cannot read"):
        read_results(bad)
    bad.write_text(json.dumps({"results": {"psnr-rgb": [30]}}))
    with pytest.raises(RDError, match="'bpp'"):
        read_results(bad)
    bad.write_text(json.dumps({"results": {"bpp": [0.1, 0.2], "psnr-rgb": [30]}}))
    with pytest.raises(RDError, match="one value per"):
        read_results(bad)
    with pytest.raises(RDError, match="not found"):
        read_results(tmp_path / "missing.json")
