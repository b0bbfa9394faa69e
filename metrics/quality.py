"""Image quality: PSNR, MS-SSIM (also in dB), 8-bit rounding."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error of images in [0, 1] (inf for 0)."""
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


#: MS-SSIM's five scales with 11x11 windows need a shorter side above 160 pixels.
MS_SSIM_MIN_SIDE = 161


def psnr(x: Tensor, rec: Tensor) -> float:
    """PSNR in dB of images in [0, 1] (inf for identical images)."""
    return psnr_from_mse(torch.mean((x.double() - rec.double()) ** 2).item())


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


