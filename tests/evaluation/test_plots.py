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


def test_the_axes_frame_the_evaluated_curve():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from evaluation.plots import frame_on_measured

    fig, ax = plt.subplots()
    vtm = (np.array([0.1, 0.5, 1.5, 3.6]), np.array([28.0, 33.0, 38.0, 44.0]), False)
    mine = (np.array([0.17, 0.29]), np.array([26.2, 26.8]), True)
    frame_on_measured(ax, [mine, vtm])
    left, right = ax.get_xlim()
    bottom, top = ax.get_ylim()
    assert left == 0 and 0.29 < right < 0.6  # not out to 3.6 bpp
    assert bottom < 26.2 and top > 28.0 and top < 44.0
    plt.close(fig)
