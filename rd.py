"""Rate–distortion results: CompressAI-format JSON, BD-rate / BD-PSNR, RD plots.

The results format is CompressAI's (``{"name", "description", "results": {"bpp",
"psnr-rgb", "ms-ssim-rgb", …}}``, one list entry per RD point) so that
``python -m compressai.utils.plot`` and the published anchor files in
``../shared/reference/anchors`` are read the same way as our own output.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor
from utils import atomic_write


class RDError(Exception):
    """A results file that cannot be used; the message is one readable line."""


def _clean(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python: strict JSON that any reader accepts."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def results_document(
    name: str, description: str, points: Sequence[dict[str, float]], **extra: Any
) -> dict[str, Any]:
    """CompressAI results dict from per-point metric dicts, sorted by ``bpp``.

    Every key present in any point becomes a list (None where a point lacks it).
    ``extra`` entries go beside ``results`` at the top level (per-image rows, BD figures).
    """
    order = sorted(range(len(points)), key=lambda i: points[i]["bpp"])
    keys: list[str] = []
    for p in points:
        keys += [k for k in p if k not in keys]
    results = {k: [points[i].get(k) for i in order] for k in keys}
    return _clean({"name": name, "description": description, "results": results, **extra})


def write_json(path: str | os.PathLike, doc: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): a crash never leaves half a file."""
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        json.dump(_clean(doc), f, indent=2, allow_nan=False)
        f.write("\n")


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Load a results file, checked: ``results`` holds ``bpp`` and equal-length metric lists."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RDError(f"results file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RDError(f"cannot read results file {path}: {type(e).__name__}") from None
    results = doc.get("results", doc) if isinstance(doc, dict) else None
    if not isinstance(results, dict) or not isinstance(results.get("bpp"), list) or not results["bpp"]:
        raise RDError(f"{path}: not a results file (no 'results' with a 'bpp' list)")
    n = len(results["bpp"])
    for key in ("psnr-rgb", "ms-ssim-rgb"):
        if key in results and (not isinstance(results[key], list) or len(results[key]) != n):
            raise RDError(f"{path}: '{key}' does not have one value per 'bpp' point")
    if isinstance(doc, dict) and "results" in doc:
        out = dict(doc)
    else:
        out = {"results": results}
    out.setdefault("name", path.name.split(".")[0])
    return out


#: MS-SSIM's five scales with 11x11 windows need a shorter side above 160 pixels.
MS_SSIM_MIN_SIDE = 161


def psnr(x: Tensor, rec: Tensor) -> float:
    """PSNR in dB of images in [0, 1] (inf for identical images)."""
    mse = torch.mean((x.double() - rec.double()) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def ms_ssim(x: Tensor, rec: Tensor) -> float:
    """MS-SSIM of images in [0, 1]; NaN where a side is too short for its five scales."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    return float(_ms_ssim(x.float(), rec.float(), data_range=1.0).item())


def quantize_8bit(x: Tensor) -> Tensor:
    """What an 8-bit file holds: clamp to [0, 1], round to 1/255 steps."""
    return x.clamp(0, 1).mul(255.0).round().div(255.0)


def quality(x: Tensor, rec: Tensor, suffix: str = "") -> dict[str, float]:
    """``psnr-rgb``, ``ms-ssim-rgb`` and ``ms-ssim-rgb-db`` (keys + ``suffix``) of ``rec`` against ``x``."""
    s = ms_ssim(x, rec)
    return {
        f"psnr-rgb{suffix}": psnr(x, rec),
        f"ms-ssim-rgb{suffix}": s,
        f"ms-ssim-rgb-db{suffix}": (ms_ssim_db([s])[0] if math.isfinite(s) else float("nan")),
    }


def ms_ssim_db(values: Iterable[float | None]) -> list[float | None]:
    """MS-SSIM in dB, ``-10 log10(1 - MS-SSIM)``, the way CompressAI plots it."""
    out: list[float | None] = []
    for v in values:
        out.append(None if v is None or v >= 1.0 else -10.0 * math.log10(1.0 - v))
    return out


def _points(results: dict[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, metric) for the points where both are known, in rate order."""
    pairs = [
        (r, d) for r, d in zip(results.get("bpp", []), results.get(metric, []))
        if r is not None and d is not None and r > 0 and math.isfinite(r) and math.isfinite(d)
    ]
    pairs.sort()
    return np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)


def bd_metrics(anchor: dict[str, Any], test: dict[str, Any], metric: str = "psnr-rgb") -> dict[str, Any]:
    """BD-rate (%) and BD-PSNR (dB) of ``test`` against ``anchor``, PCHIP (``bjontegaard``).

    Negative BD-rate: ``test`` needs fewer bits for the same quality.  Figures
    are None, with a ``note``, when either curve has fewer than two points or
    the curves do not overlap.  ``overlap`` is the share of the joint quality
    range (for BD-rate) that both curves cover; below ~0.75 the figure
    extrapolates little but rests on a short stretch of curve.
    """
    import bjontegaard

    ra, da = _points(anchor["results"], metric)
    rt, dt = _points(test["results"], metric)
    out: dict[str, Any] = {"anchor": anchor.get("name"), "bd-rate": None, "bd-psnr": None, "overlap": None}
    if len(ra) < 2 or len(rt) < 2:
        out["note"] = f"needs at least two '{metric}' points on each curve"
        return out
    lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
    out["overlap"] = max(hi - lo, 0.0) / (max(da.max(), dt.max()) - min(da.min(), dt.min()))
    if out["overlap"] <= 0:
        out["note"] = "the curves do not overlap in quality"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(method="pchip", require_matching_points=False, min_overlap=0)
        try:
            out["bd-rate"] = float(bjontegaard.bd_rate(ra, da, rt, dt, **kw))
            out["bd-psnr"] = float(bjontegaard.bd_psnr(ra, da, rt, dt, **kw))
        except ValueError as e:  # e.g. a quality that is not monotonic in rate
            out["note"] = f"BD not computable: {e}"
    return _clean(out)


#: Codec names drawn dashed: the classical codecs (measured here or published).
_CLASSICAL = ("jpeg", "webp", "avif", "vtm", "hm", "bpg", "av1", "jpeg2000")


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
        rate, psnr = _points(res, "psnr-rgb")
        if len(rate):
            axes[0].plot(rate, psnr, **style)
        rate, ssim = _points(res, "ms-ssim-rgb")
        if len(rate):
            axes[1].plot(rate, ms_ssim_db(ssim), **style)
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
