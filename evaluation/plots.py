"""RD plots of results documents: PSNR and MS-SSIM (dB) against bpp."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from utils.cli import UsageError
from utils.files import atomic_write, check_writable

from metrics.quality import ms_ssim_db
from .results import rd_points

#: Codec names drawn dashed: the classical codecs (measured here or published).
_CLASSICAL = ("jpeg", "webp", "avif", "vtm", "hm", "bpg", "av1", "jpeg2000")


def check_plot_path(path: str | os.PathLike) -> None:
    """Refuse, before any work, a plot whose format matplotlib cannot write or whose folder is not writable."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(path).suffix.lstrip(".").lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if fmt not in formats:
        raise UsageError(f"--plot {path}: matplotlib cannot write .{fmt or '(no extension)'} "
                         f"(use one of {', '.join(sorted(formats))})")
    check_writable(path, "plot")


Limits = tuple[tuple[float, float], tuple[float, float]]  # (left, right), (bottom, top)


def rd_limits(curves: Sequence[tuple[np.ndarray, np.ndarray, bool]]) -> Limits | None:
    """Axis limits around the evaluated curves that keep every other curve's part in that rate range in view.

    ``curves`` are (rates, qualities, evaluated).  The rate axis spans 0 to
    1.6x the largest evaluated rate (at least 0.1 bpp more), so that an anchor
    reaching 3.6 bpp does not squeeze a 0.2–0.3 bpp curve into a corner; a
    curve that starts just beyond (a JPEG sweep whose lowest quality costs
    more bits than the model's highest rate) widens it to its first point, up
    to 4x the evaluated rates.  The quality axis holds every curve's points in
    that span and where each curve's line crosses its right edge, plus a
    margin.  None without an evaluated curve (matplotlib's own limits stay).
    """
    own = [r for r, _, evaluated in curves if evaluated and len(r)]
    if not own:
        return None
    hi = max(float(r.max()) for r in own)
    right = max(1.6 * hi, hi + 0.1)
    reach = max(4.0 * hi, hi + 0.3)
    for r, _, evaluated in curves:
        if not evaluated and len(r) and right < float(r.min()) <= reach:
            right = 1.05 * float(r.min())
    seen = []
    for r, q, _ in curves:
        if not len(r):
            continue
        seen += [float(v) for v in q[r <= right]]
        if r.min() < right < r.max():  # the line leaves the frame here: where, as drawn (straight in rate)
            seen.append(float(np.interp(right, r, q)))
    lo_q, hi_q = min(seen), max(seen)
    margin = max(0.5, 0.08 * (hi_q - lo_q))
    return (0.0, right), (lo_q - margin, hi_q + margin)


def frame_on_measured(ax, curves: Sequence[tuple[np.ndarray, np.ndarray, bool]]) -> None:
    """Set ``ax``'s limits to :func:`rd_limits` of its curves."""
    limits = rd_limits(curves)
    if limits is not None:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])


def plot_rd(
    curves: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    title: str = "",
    measured: int | None = None,
) -> None:
    """PSNR–bpp and MS-SSIM(dB)–bpp panels of results documents, saved as an image.

    The first ``measured`` curves (default: all but those from files) are the
    evaluated checkpoints, drawn solid and thick; classical codecs are dashed.
    A curve without MS-SSIM appears only on the PSNR panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = len(curves) if measured is None else measured
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    panels: list[list[tuple[np.ndarray, np.ndarray, bool]]] = [[], []]  # (rate, quality, measured) per panel
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, doc in enumerate(curves):
        res = doc["results"]
        name = str(doc.get("name", f"curve {i}"))
        classical = any(c in name.lower().replace("-", "").replace(" ", "") for c in _CLASSICAL)
        style = dict(
            color=cmap(i % cmap.N),
            marker="o" if i < measured else ".",
            linestyle="--" if classical else "-",
            linewidth=2.0 if i < measured else 1.2,
            markersize=5 if i < measured else 4,
            label=name,
        )
        rate, psnr = rd_points(res, "psnr-rgb")
        if len(rate):
            axes[0].plot(rate, psnr, **style)
            panels[0].append((rate, psnr, i < measured))
        rate, ssim = rd_points(res, "ms-ssim-rgb")
        if len(rate):
            db = np.array(ms_ssim_db(ssim), float)
            axes[1].plot(rate, db, **style)
            panels[1].append((rate, db, i < measured))
    for ax, curves_of_panel in zip(axes, panels):
        frame_on_measured(ax, curves_of_panel)
    for ax, ylabel in zip(axes, ("PSNR (RGB) [dB]", "MS-SSIM (RGB) [dB]")):
        ax.set_xlabel("Rate [bpp]")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.4)
        if ax.lines:
            ax.legend(loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no curve has this metric", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_title("PSNR")
    axes[1].set_title("MS-SSIM, -10 log10(1 - MS-SSIM)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
