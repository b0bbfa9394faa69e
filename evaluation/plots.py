"""RD plots of results documents: PSNR and MS-SSIM (dB) against bpp."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from utils import UsageError, atomic_write, check_writable

from .metrics import ms_ssim_db
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


def frame_on_measured(ax, curves: Sequence[tuple[np.ndarray, np.ndarray, bool]]) -> None:
    """Axes around the evaluated curves, so that an anchor reaching 3.6 bpp does not dwarf a 0.2–0.3 bpp curve.

    The rate axis spans 0 to 1.6x the largest evaluated rate (at least 0.1
    bpp more); the quality axis the qualities every curve reaches in that
    span, plus a margin.  Without an evaluated curve matplotlib's own limits stay.
    """
    own = [(r, q) for r, q, m in curves if m]
    if not own:
        return
    hi = max(float(r.max()) for r, _ in own)
    right = max(1.6 * hi, hi + 0.1)
    seen = np.concatenate([q[r <= right] for r, q, _ in curves if (r <= right).any()])
    lo_q, hi_q = float(seen.min()), float(seen.max())
    margin = max(0.5, 0.08 * (hi_q - lo_q))
    ax.set_xlim(0.0, right)
    ax.set_ylim(lo_q - margin, hi_q + margin)


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
