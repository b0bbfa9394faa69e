"""Results JSON, BD figures, metrics and the RD plot (rd.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

import rd
from tests.helpers import REFERENCE, require

ANCHORS = REFERENCE / "anchors" / "kodak"


def _doc(name, bpp, psnr, ssim=None):
    points = [{"bpp": b, "psnr-rgb": p} for b, p in zip(bpp, psnr)]
    if ssim:
        for pt, s in zip(points, ssim):
            pt["ms-ssim-rgb"] = s
    return rd.results_document(name, "test curve", points)


def test_published_tcm_large_against_vtm_is_minus_11_7_percent():
    vtm = rd.read_results(require(ANCHORS / "vtm.json"))
    tcm = rd.read_results(require(ANCHORS / "paper-tcm-large_mse.json"))
    fig = rd.bd_metrics(vtm, tcm)
    assert round(fig["bd-rate"], 1) == -11.7
    assert fig["bd-psnr"] > 0  # fewer bits at equal quality <=> more quality at equal rate
    assert fig["anchor"] == "VTM"
    # Swapping the roles flips the sign.
    assert rd.bd_metrics(tcm, vtm)["bd-rate"] > 0


def test_bd_of_a_curve_against_itself_is_zero_and_a_shifted_curve_is_exact():
    a = _doc("a", [0.1, 0.2, 0.4, 0.8], [28.0, 30.0, 32.5, 35.0])
    b = _doc("b", [0.09, 0.18, 0.36, 0.72], [28.0, 30.0, 32.5, 35.0])  # 10 % fewer bits everywhere
    assert abs(rd.bd_metrics(a, a)["bd-rate"]) < 1e-9
    assert rd.bd_metrics(a, b)["bd-rate"] == pytest.approx(-10.0, abs=1e-6)


def test_bd_is_none_with_a_reason_for_one_point_or_no_overlap():
    a = _doc("a", [0.1, 0.2, 0.4], [28.0, 30.0, 32.0])
    one = rd.bd_metrics(a, _doc("one", [0.3], [31.0]))
    assert one["bd-rate"] is None and "two" in one["note"]
    apart = rd.bd_metrics(a, _doc("far", [1.0, 2.0], [40.0, 45.0]))
    assert apart["bd-rate"] is None and "overlap" in apart["note"]


def test_results_json_is_sorted_by_rate_strict_and_read_back_by_compressai_plot(tmp_path):
    from compressai.utils.plot.__main__ import main as compressai_plot
    from compressai.utils.plot.__main__ import parse_json_file

    doc = rd.results_document(
        "mine", "d",
        [{"bpp": 0.5, "psnr-rgb": 33.0, "ms-ssim-rgb": 0.98}, {"bpp": 0.2, "psnr-rgb": 29.0, "ms-ssim-rgb": float("nan")}],
        per_image={"x": [{"image": "a.png", "bpp": 0.2}]},
    )
    assert doc["results"]["bpp"] == [0.2, 0.5]
    assert doc["results"]["psnr-rgb"] == [29.0, 33.0]
    assert doc["results"]["ms-ssim-rgb"] == [None, 0.98]  # NaN is not JSON
    path = tmp_path / "sub" / "results.json"
    rd.write_json(path, doc)
    json.loads(path.read_text())  # strict JSON
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left
    parsed = parse_json_file(path, "psnr")
    assert parsed["name"] == "mine" and parsed["xs"] == [0.2, 0.5] and parsed["ys"] == [29.0, 33.0]
    compressai_plot(["-f", str(path), "-o", str(tmp_path / "c.png")])
    assert Image.open(tmp_path / "c.png").size[0] > 100
    assert rd.read_results(path)["per_image"]["x"][0]["image"] == "a.png"


def test_read_results_refuses_bad_files_in_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(rd.RDError, match="cannot read"):
        rd.read_results(bad)
    bad.write_text(json.dumps({"results": {"psnr-rgb": [30]}}))
    with pytest.raises(rd.RDError, match="'bpp'"):
        rd.read_results(bad)
    bad.write_text(json.dumps({"results": {"bpp": [0.1, 0.2], "psnr-rgb": [30]}}))
    with pytest.raises(rd.RDError, match="one value per"):
        rd.read_results(bad)
    with pytest.raises(rd.RDError, match="not found"):
        rd.read_results(tmp_path / "missing.json")


def test_metrics():
    x = torch.rand(1, 3, 200, 180, generator=torch.Generator().manual_seed(0))
    assert rd.psnr(x, x) == math.inf
    noisy = (x + 0.01).clamp(0, 1)
    mse = torch.mean((x.double() - noisy.double()) ** 2).item()
    assert rd.psnr(x, noisy) == pytest.approx(-10 * math.log10(mse))
    assert rd.ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert 0 < rd.ms_ssim(x, noisy) < 1
    assert math.isnan(rd.ms_ssim(x[..., :150, :], x[..., :150, :]))  # too small for five scales
    q = rd.quantize_8bit(torch.tensor([-0.1, 0.5, 0.1234, 1.2]))
    assert torch.equal(q * 255, torch.tensor([0.0, 128.0, 31.0, 255.0]))
    m = rd.quality(x, noisy, suffix="-8bit")
    assert m["ms-ssim-rgb-db-8bit"] == pytest.approx(-10 * math.log10(1 - m["ms-ssim-rgb-8bit"]))


def test_plot_draws_both_panels_from_anchor_files(tmp_path):
    vtm = rd.read_results(require(ANCHORS / "vtm.json"))
    paper = rd.read_results(require(ANCHORS / "paper-tcm-large_mse.json"))  # PSNR only
    mine = _doc("TCM (this run)", [0.2, 0.4, 0.8], [30.0, 33.0, 36.0], [0.95, 0.975, 0.99])
    out = tmp_path / "rd.png"
    rd.plot_rd([mine, vtm, paper], out, title="kodak", measured=1)
    img = Image.open(out)
    assert img.size[0] > img.size[1] > 300
    # Two panels with drawn curves: the image is far from a blank canvas.
    extrema = img.convert("L").getextrema()
    assert extrema[0] < 100
