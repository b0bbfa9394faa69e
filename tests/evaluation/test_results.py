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


@pytest.mark.parametrize("results, message", [
    ({"bpp": ["0.1", "0.2"], "psnr-rgb": [30.0, 32.0]}, "'bpp' holds \"0.1\""),
    ({"bpp": [0.1, None], "psnr-rgb": [30.0, 32.0]}, "'bpp' holds null"),
    ({"bpp": [0.1, True], "psnr-rgb": [30.0, 32.0]}, "'bpp' holds true"),
    ({"bpp": [0.1, 0.0], "psnr-rgb": [30.0, 32.0]}, "'bpp' holds 0.0"),
    ({"bpp": [0.1, float("inf")], "psnr-rgb": [30.0, 32.0]}, "'bpp' holds Infinity"),
    ({"bpp": [0.1, 0.2], "psnr-rgb": [30.0, "32"]}, "'psnr-rgb' holds \"32\""),
    ({"bpp": [0.1, 0.2], "psnr-rgb": [30.0, float("nan")]}, "'psnr-rgb' holds NaN"),
    ({"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 32.0], "ms-ssim-rgb": [0.9, [0.95]]}, "'ms-ssim-rgb' holds [0.95]"),
    ({"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 32.0], "ms-ssim-rgb": [0.9]}, "one value per"),
    ({"bpp": [0.1, 0.2], "ms-ssim-rgb": [0.9, 0.95]}, "no 'psnr-rgb'"),
    ({"bpp": [0.1, 0.2], "psnr-rgb": [30.0, None]}, "fewer than two points"),
    ({"bpp": [0.1], "psnr-rgb": [30.0]}, "fewer than two points"),
    ({"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 10**400]}, "'psnr-rgb' holds 100000000"),  # beyond float's range
    ({"bpp": [0.1, 10**400], "psnr-rgb": [30.0, 32.0]}, "'bpp' holds 100000000"),
    ({"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 32.0], "ms-ssim-rgb": [0.9, 1.5]}, "'ms-ssim-rgb' holds 1.5, outside 0..1"),
    ({"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 32.0], "ms-ssim-rgb": [-0.2, 0.9]}, "'ms-ssim-rgb' holds -0.2, outside"),
])
def test_read_results_checks_every_value_an_anchor_is_used_with(tmp_path, results, message):
    bad = tmp_path / "anchor.json"
    bad.write_text(json.dumps({"name": "A", "results": results}))  # NaN and Infinity as Python writes them
    with pytest.raises(RDError) as caught:
        read_results(bad)
    assert message in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_read_results_refuses_a_deeply_nested_file_and_a_name_that_is_no_string(tmp_path):
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RDError, match="nested too deeply"):
        read_results(nested)
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"name": {"a": 1}, "results": {"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 32.0]}}))
    with pytest.raises(RDError, match="'name' is not a string"):
        read_results(named)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"results": {"bpp": [0.1, 0.2, 0.4], "psnr-rgb": [30, 32.0, None],
                                          "ms-ssim-rgb": [None, 0.95, 0.97], "encoding_time": ["n/a"] * 3}}))
    assert read_results(ok)["name"] == "ok"  # integers, nulls, and keys no comparison reads are fine


def test_read_results_refuses_what_is_not_a_file_or_too_large_without_waiting_or_reading_it(tmp_path, monkeypatch):
    """A FIFO would be waited on for ever and /dev/zero read until memory runs out; an integer of 5000 digits
    is past json's limit; a name is printed, so no line break or terminal escape."""
    import os

    import evaluation.results as results

    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(RDError, match=r"fifo.json is a FIFO \(named pipe\), not a regular file$"):
        read_results(tmp_path / "fifo.json")
    with pytest.raises(RDError, match="^results file /dev/zero is a character device, not a regular file$"):
        read_results("/dev/zero")
    digits = tmp_path / "digits.json"
    digits.write_text('{"results": {"bpp": [1, 2], "psnr-rgb": [' + "9" * 5000 + ", 30]}}")
    with pytest.raises(RDError, match="a number too long to be a rate or a quality$"):
        read_results(digits)
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"name": "VTM\n\x1b[2Jcleared", "results": {"bpp": [0.1, 0.2], "psnr-rgb": [30, 31]}}))
    with pytest.raises(RDError, match="'name' holds control characters"):
        read_results(named)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"results": {"bpp": [0.1, 0.2], "psnr-rgb": [30, 31]}, "per_image": "x" * 2000}))
    monkeypatch.setattr(results, "MAX_RESULTS_BYTES", 1024)
    with pytest.raises(RDError, match="larger than 0 MiB: not a results file"):
        read_results(big)


def test_anchors_named_alike_stay_apart(tmp_path, capsys):
    """Two anchors named VTM (two datasets' files), one named like a baseline: each its own curve and BD line."""
    from evaluation.results import distinct_names

    docs = [{"name": "VTM", "results": {}}, {"name": "VTM", "results": {}}, {"name": "JPEG (Pillow)", "results": {}},
            {"name": "HM", "results": {}}]
    files = ["kodak/vtm.json", "clic/vtm.json", "jpeg.json", "hm.json"]
    named = distinct_names(docs, files, taken=["TCM", "JPEG (Pillow)"])
    assert [d["name"] for d in named] == ["VTM", "VTM (vtm.json)", "JPEG (Pillow) (jpeg.json)", "HM"]
    assert [d["name"] for d in distinct_names(docs[:2] * 2, files[:2] * 2)] == [
        "VTM", "VTM (vtm.json)", "VTM (vtm.json, 2)", "VTM (vtm.json, 3)"]  # the same files given twice
    assert docs[1]["name"] == "VTM"  # the documents read are left as they were
    assert capsys.readouterr().err.splitlines()[0] == "note: clic/vtm.json is named 'VTM' like an earlier curve: " \
                                                      "shown as 'VTM (vtm.json)'"
