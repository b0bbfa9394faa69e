"""RD plots (evaluation/plots.py)."""

from __future__ import annotations

import pytest
from PIL import Image

from evaluation.plots import plot_rd
from evaluation.results import read_results
from tests.helpers import REFERENCE, rd_doc, require

ANCHORS = REFERENCE / "anchors" / "kodak"


def test_the_plot_shows_each_curve_on_the_panels_it_has_data_for(tmp_path, monkeypatch):
    """What is drawn, read back from matplotlib's objects: each curve's points, in dB on the MS-SSIM panel,
    a curve without MS-SSIM on the PSNR panel only, the evaluated curve solid and thick, codecs dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)  # plot_rd closes its figure: keep it to read
    mine = rd_doc("TCM (this run)", [0.8, 0.2, 0.4], [36.0, 30.0, 33.0], [0.99, 0.95, 0.975])
    vtm = rd_doc("VTM-17.0", [0.1, 0.5, 1.0], [29.0, 34.0, 37.0], [0.9, 0.99, 0.999])
    paper = rd_doc("TCM-Large (paper)", [0.15, 0.6], [30.5, 35.5])  # PSNR only
    out = tmp_path / "rd.png"
    plot_rd([mine, vtm, paper], out, title="kodak", measured=1)
    fig, = drawn
    psnr_panel, ssim_panel = fig.axes
    psnr = {line.get_label(): line for line in psnr_panel.lines}
    ssim = {line.get_label(): line for line in ssim_panel.lines}
    assert list(psnr) == ["TCM (this run)", "VTM-17.0", "TCM-Large (paper)"] and list(ssim) == list(psnr)[:2]
    assert psnr["TCM (this run)"].get_xydata().tolist() == [[0.2, 30.0], [0.4, 33.0], [0.8, 36.0]]  # in rate order
    assert psnr["TCM-Large (paper)"].get_xydata().tolist() == [[0.15, 30.5], [0.6, 35.5]]
    # -10 log10(1 - MS-SSIM): 0.95 -> 13.01 dB, 0.9 -> 10 dB, 0.99 -> 20 dB, 0.999 -> 30 dB
    assert ssim["TCM (this run)"].get_ydata() == pytest.approx([13.0103, 16.0206, 20.0], abs=1e-4)
    assert ssim["VTM-17.0"].get_ydata() == pytest.approx([10.0, 20.0, 30.0])
    assert [psnr[n].get_linestyle() for n in psnr] == ["-", "--", "-"]  # VTM is a classical codec
    assert psnr["TCM (this run)"].get_linewidth() > psnr["VTM-17.0"].get_linewidth()
    assert [t.get_text() for t in psnr_panel.get_legend().get_texts()] == list(psnr)
    assert [t.get_text() for t in fig.texts] == ["kodak"]  # the title
    assert psnr_panel.get_xlabel() == "Rate [bpp]" and ssim_panel.get_ylabel() == "MS-SSIM (RGB) [dB]"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (13 * 110, int(5.5 * 110))
    plt.close(fig)


def test_a_panel_no_curve_has_data_for_says_so(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    plot_rd([rd_doc("TCM", [0.2, 0.4], [30.0, 33.0])], tmp_path / "rd.png")
    fig, = drawn
    assert len(fig.axes[1].lines) == 0 and [t.get_text() for t in fig.axes[1].texts] == ["no curve has this metric"]
    plt.close(fig)


def test_the_published_anchors_plot(tmp_path, monkeypatch):
    """The anchor files in ../shared: each curve drawn with every point it has."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vtm = read_results(require(ANCHORS / "vtm.json"))
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    plot_rd([vtm], tmp_path / "rd.png", title="kodak", measured=0)
    line, = drawn[0].axes[0].lines
    assert line.get_label() == vtm["name"] and len(line.get_xdata()) == len(vtm["results"]["bpp"])
    plt.close(drawn[0])


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
