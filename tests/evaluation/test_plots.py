"""RD plots (evaluation/plots.py)."""

from __future__ import annotations

from PIL import Image

from evaluation.plots import plot_rd
from evaluation.results import read_results
from tests.helpers import REFERENCE, rd_doc, require

ANCHORS = REFERENCE / "anchors" / "kodak"


def test_plot_draws_both_panels_from_anchor_files(tmp_path):
    vtm = read_results(require(ANCHORS / "vtm.json"))
    paper = read_results(require(ANCHORS / "paper-tcm-large_mse.json"))  # PSNR only
    mine = rd_doc("TCM (this run)", [0.2, 0.4, 0.8], [30.0, 33.0, 36.0], [0.95, 0.975, 0.99])
    out = tmp_path / "rd.png"
    plot_rd([mine, vtm, paper], out, title="kodak", measured=1)
    img = Image.open(out)
    assert img.size[0] > img.size[1] > 300
    # Two panels with drawn curves: the image is far from a blank canvas.
    extrema = img.convert("L").getextrema()
    assert extrema[0] < 100
