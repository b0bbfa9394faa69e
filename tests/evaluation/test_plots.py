"""RD plots (evaluation/plots.py)."""

from __future__ import annotations

from PIL import Image

from evaluation.plots import plot_rd
from evaluation.results import read_results
from tests.helpers import ANCHORS, rd_doc

KODAK_ANCHORS = ANCHORS / "kodak"


def test_plot_draws_both_panels_from_anchor_files(tmp_path):
    vtm = read_results(KODAK_ANCHORS / "vtm.json")
    paper = read_results(KODAK_ANCHORS / "paper-tcm-large.json")  # PSNR only
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


def _part_in_range(rates, qualities, xlim):
    """The curve as drawn (straight between points), sampled where it lies within the rate range."""
    import numpy as np

    lo, hi = max(xlim[0], rates.min()), min(xlim[1], rates.max())
    if lo > hi:
        return np.array([])
    return np.interp(np.linspace(lo, hi, 400), rates, qualities)


def test_each_baseline_keeps_its_part_of_the_rate_range_in_view():
    """A low-rate model: JPEG's lowest quality costs more bits than the model's highest rate, WebP crosses the edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from evaluation.plots import frame_on_measured, rd_limits

    mine = (np.array([0.03, 0.05, 0.08]), np.array([24.0, 25.5, 26.8]), True)
    jpeg = (np.array([0.21, 0.35, 0.6, 1.2]), np.array([24.5, 27.0, 29.5, 33.0]), False)
    webp = (np.array([0.1, 0.18, 0.4, 0.9]), np.array([26.0, 28.0, 31.0, 35.0]), False)
    vtm = (np.array([0.6, 1.5, 3.6]), np.array([36.0, 40.0, 44.0]), False)  # far beyond: not worth the squeeze
    curves = [mine, jpeg, webp, vtm]
    fig, ax = plt.subplots()
    frame_on_measured(ax, curves)
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    plt.close(fig)
    assert (xlim, ylim) == rd_limits(curves)
    assert xlim[0] == 0 and 0.08 * 1.6 <= xlim[1] < 0.6  # framed on the model, VTM's 0.6 bpp and above left out
    assert ylim[1] < 36.0
    for rates, qualities, _ in (mine, jpeg, webp):
        part = _part_in_range(rates, qualities, xlim)
        assert len(part) and ylim[0] < part.min() and part.max() < ylim[1], (rates, xlim, ylim)
