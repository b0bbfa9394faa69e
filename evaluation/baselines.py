"""Classical codecs measured on this machine: JPEG, WebP and AVIF quality sweeps with Pillow.

A learned codec's curve means little without a reference measured on the same
images with the same metrics; the published anchors come from other machines
and other pipelines.  Each codec is run at every quality of the sweep, on every
image: bpp from the encoded file's bytes over the pixel count, PSNR and
MS-SSIM of the decoded 8-bit image (what the file holds).  Without a sweep
given, :func:`spanning_qualities` chooses one whose curve reaches below and
above the evaluated models' points, so that every baseline overlaps them.
"""

from __future__ import annotations

import io
import math
import time
import warnings
from typing import Callable, NamedTuple, Sequence

import numpy as np
from PIL import Image, features

from datasets import to_tensor
from utils.cli import ToolError, first_line

from metrics.quality import quality

from .options import CODECS

DEFAULT_QUALITIES: tuple[int, ...] = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
#: The qualities each codec is swept over when they are chosen (Pillow: JPEG above 95 is not recommended).
QUALITY_RANGE: dict[str, tuple[int, int]] = {"jpeg": (1, 95), "webp": (0, 100), "avif": (0, 100)}
#: How many qualities a chosen sweep has (its two ends included).
SPANNING_POINTS = 8


class BaselineError(ToolError):
    """A codec that cannot be run here; the message is one readable line."""


def available() -> list[str]:
    """The codecs of :data:`CODECS` that the installed Pillow can encode."""
    with warnings.catch_warnings():  # an older Pillow warns about features it does not know
        warnings.simplefilter("ignore")
        return [name for name, (_, feature, _) in CODECS.items() if features.check(feature)]


def check_codecs(names: Sequence[str]) -> None:
    """Refuse, in one line, a codec that is unknown or missing from this Pillow."""
    for name in names:
        if name not in CODECS:
            raise BaselineError(f"unknown baseline {name!r}; choose from {', '.join(CODECS)}")
        if name not in available():
            raise BaselineError(f"baseline {name!r} is not supported by the installed Pillow")


def check_qualities(qualities: Sequence[int]) -> None:
    if not qualities or any(not 0 <= q <= 100 for q in qualities):
        raise BaselineError("baseline qualities must be integers from 0 to 100")


def code_image(img: Image.Image, codec: str, q: int) -> tuple[bytes, Image.Image, float, float]:
    """Encode at quality ``q`` and decode: (file bytes, decoded RGB image, enc s, dec s)."""
    fmt = CODECS[codec][0]
    buf = io.BytesIO()
    t0 = time.perf_counter()
    img.save(buf, format=fmt, quality=int(q))
    t1 = time.perf_counter()
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as dec:
        dec = dec.convert("RGB")
    t2 = time.perf_counter()
    return data, dec, t1 - t0, t2 - t1


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


class Sweep(NamedTuple):
    """A codec's quality sweep: averaged points, per-image rows by quality, and the images it could not code."""

    points: list[dict[str, float]]
    per_image: dict[str, list[dict]]
    skipped: dict[str, str]  # image name -> why the codec could not code it


def sweep(
    images: Sequence[tuple[str, Image.Image]],
    codec: str,
    qualities: Sequence[int] = DEFAULT_QUALITIES,
    progress: Callable[[int], None] | None = None,
) -> Sweep:
    """Run ``codec`` at each quality on each image.

    Returns the averaged RD points (one per quality, with its ``quality``),
    the per-image rows keyed by quality, and the images the codec refused
    (WebP's 16383-pixel side limit, say) with the reason.  An image the codec
    refuses at any quality is left out of every point, so that all points
    average the same images.  ``progress(n)`` is called after each image.
    """
    skipped: dict[str, str] = {}
    by_quality: dict[int, list[dict]] = {}
    for q in sorted(set(int(q) for q in qualities)):
        rows = []
        for name, img in images:
            if name not in skipped:
                try:
                    data, dec, t_enc, t_dec = code_image(img, codec, q)
                except (OSError, ValueError) as e:  # what Pillow's encoders raise for an image they cannot code
                    skipped[name] = f"{display_name(codec)} cannot code this {img.width}x{img.height} image: " \
                                    f"{first_line(e)}"
                else:
                    x = to_tensor(img)
                    row = {"image": name, "bpp": len(data) * 8.0 / (img.width * img.height)}
                    row.update(quality(x, to_tensor(dec)))
                    row.update(encoding_time=t_enc, decoding_time=t_dec)
                    rows.append(row)
            if progress:
                progress(1)
        by_quality[q] = rows
    points: list[dict[str, float]] = []
    per_image: dict[str, list[dict]] = {}
    for q, rows in by_quality.items():
        rows = [r for r in rows if r["image"] not in skipped]
        if not rows:
            continue
        keys = [k for k in rows[0] if k != "image"]
        points.append({"quality": q, **{k: _mean([r[k] for r in rows]) for k in keys}})
        per_image[str(q)] = rows
    return Sweep(points, per_image, skipped)


def _probe(images: Sequence[tuple[str, Image.Image]], codec: str, q: int) -> tuple[float, float] | None:
    """(mean bpp, mean PSNR) of ``codec`` at quality ``q`` over the images it can code; None if none."""
    rates, psnrs = [], []
    for _, img in images:
        try:
            data, dec, _, _ = code_image(img, codec, q)
        except (OSError, ValueError):
            continue
        a = np.asarray(img, dtype=np.float64)
        mse = float(np.mean((a - np.asarray(dec, dtype=np.float64)) ** 2)) / 255.0**2
        rates.append(len(data) * 8.0 / (img.width * img.height))
        psnrs.append(float("inf") if mse == 0 else -10.0 * math.log10(mse))
    return (float(np.mean(rates)), float(np.mean(psnrs))) if rates else None


def spanning_qualities(images: Sequence[tuple[str, Image.Image]], codec: str, rates: Sequence[float],
                       psnrs: Sequence[float], count: int = SPANNING_POINTS) -> list[int]:
    """A quality sweep of ``codec`` whose curve spans the models' points: ``count`` qualities, evenly spaced.

    The lowest is the highest quality whose mean rate and PSNR are both at or
    below the models' lowest (or the codec's lowest quality), the highest the
    lowest quality whose mean rate and PSNR are both at or above the models'
    highest (or its highest); each is found by bisection over the images, as
    rate and PSNR rise with quality.  The BD figures and the gap at matched
    rate then compare the codec where the models work, instead of over a
    default sweep that may miss them.
    """
    lowest, highest = QUALITY_RANGE[codec]
    seen: dict[int, tuple[float, float] | None] = {}

    def probe(q: int) -> tuple[float, float] | None:
        if q not in seen:
            seen[q] = _probe(images, codec, q)
        return seen[q]

    def below(q: int) -> bool:
        p = probe(q)
        return p is not None and p[0] <= min(rates) and p[1] <= min(psnrs)

    def above(q: int) -> bool:
        p = probe(q)
        return p is not None and p[0] >= max(rates) and p[1] >= max(psnrs)

    lo, hi = lowest, highest  # the highest quality that is still below
    if below(lowest):
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if below(mid) else (lo, mid - 1)
    q_lo = lo
    lo, hi = q_lo, highest  # the lowest quality that is above
    if above(highest):
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if above(mid) else (mid + 1, hi)
        q_hi = lo
    else:
        q_hi = highest
    if q_hi - q_lo + 1 <= count:
        return list(range(q_lo, q_hi + 1))
    return sorted({round(q_lo + i * (q_hi - q_lo) / (count - 1)) for i in range(count)})


def display_name(codec: str) -> str:
    return f"{CODECS[codec][2]} (Pillow)"


def matched_quality(per_image: dict[str, list[dict]], image: str, target_bpp: float) -> int:
    """The sweep's quality whose file for ``image`` is closest in rate to ``target_bpp``."""
    best = min(((abs(row["bpp"] - target_bpp), int(q)) for q, rows in per_image.items()
                for row in rows if row["image"] == image), default=None)
    if best is None:
        raise BaselineError(f"no {image} in the baseline sweep")
    return best[1]
