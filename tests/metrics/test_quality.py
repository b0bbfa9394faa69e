"""PSNR, MS-SSIM and 8-bit rounding (metrics/quality.py)."""

from __future__ import annotations

import math

import pytest
import torch

from metrics.quality import ms_ssim, psnr, quality, quantize_8bit


def test_metrics():
    x = torch.rand(1, 3, 200, 180, generator=torch.Generator().manual_seed(0))
    assert psnr(x, x) == math.inf
    noisy = (x + 0.01).clamp(0, 1)
    mse = torch.mean((x.double() - noisy.double()) ** 2).item()
    assert psnr(x, noisy) == pytest.approx(-10 * math.log10(mse))
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert 0 < ms_ssim(x, noisy) < 1
    assert math.isnan(ms_ssim(x[..., :150, :], x[..., :150, :]))  # too small for five scales
    q = quantize_8bit(torch.tensor([-0.1, 0.5, 0.1234, 1.2]))
    assert torch.equal(q * 255, torch.tensor([0.0, 128.0, 31.0, 255.0]))
    m = quality(x, noisy, suffix="-8bit")
    assert m["ms-ssim-rgb-db-8bit"] == pytest.approx(-10 * math.log10(1 - m["ms-ssim-rgb-8bit"]))
