"""PSNR, MS-SSIM and 8-bit rounding (metrics/quality.py)."""

from __future__ import annotations

import math

import pytest
import torch

from metrics.quality import ms_ssim, ms_ssim_db, psnr, quality, quantize_8bit


def test_psnr_of_known_errors():
    """PSNR's definition, 10 log10(1 / MSE) for images in [0, 1], on errors whose MSE is known exactly."""
    x = 0.2 + 0.6 * torch.rand(1, 3, 200, 180, generator=torch.Generator().manual_seed(0))
    assert psnr(x, x) == math.inf
    assert psnr(x, x + 0.01) == pytest.approx(40.0, abs=1e-4)  # a constant offset of 0.01: MSE 1e-4
    levels = torch.randint(1, 255, (1, 3, 64, 64), generator=torch.Generator().manual_seed(1)).float()
    # one 8-bit level off everywhere: 20 log10(255) = 48.1308 dB, the figure of an off-by-one decoder
    assert psnr(levels / 255, (levels + 1) / 255) == pytest.approx(48.1308, abs=1e-4)
    half = (levels / 255).clone()
    half[..., :32, :] += 0.1  # half the pixels off by 0.1: MSE 0.005, 23.01 dB
    assert psnr(levels / 255, half) == pytest.approx(23.0103, abs=1e-4)


@pytest.mark.parametrize("a, b, expected", [(0.2, 0.8, 0.904425), (0.5, 0.75, 0.989388), (0.4, 0.4, 1.0)])
def test_ms_ssim_of_two_flat_images_is_their_luminance_term(a, b, expected):
    """Wang, Simoncelli, Bovik (2003): for flat images every contrast-structure term is 1 and MS-SSIM is the
    coarsest scale's luminance term, (2ab + C1) / (a^2 + b^2 + C1) with C1 = 0.01^2, to its weight 0.1333;
    the expected figures are that, worked out by hand (sides that stay even at every scale, so that no
    scale pads).  The variances, E[x^2] - E[x]^2 in float32, cancel to within 2e-4 of 0, not to 0."""
    assert ((2 * a * b + 1e-4) / (a * a + b * b + 1e-4)) ** 0.1333 == pytest.approx(expected, abs=1e-6)
    x, y = torch.full((1, 3, 256, 192), a), torch.full((1, 3, 256, 192), b)
    assert ms_ssim(x, y) == pytest.approx(expected, abs=3e-4)


def test_ms_ssim_of_identical_images_is_one_and_falls_with_noise():
    x = torch.rand(1, 3, 200, 180, generator=torch.Generator().manual_seed(0))
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    values = [ms_ssim(x, (x + s * noise).clamp(0, 1)) for s in (0.01, 0.05, 0.2)]
    assert 1.0 > values[0] > values[1] > values[2] > 0.0
    assert math.isnan(ms_ssim(x[..., :160, :], x[..., :160, :]))  # 160 pixels: too short for five scales
    assert not math.isnan(ms_ssim(x[..., :161, :], x[..., :161, :]))


def test_8bit_rounding_and_ms_ssim_in_decibels():
    q = quantize_8bit(torch.tensor([-0.1, 0.5, 0.1234, 1.2]))
    assert torch.equal(q * 255, torch.tensor([0.0, 128.0, 31.0, 255.0]))  # clamped; 127.5 rounds to even; 31.467
    assert ms_ssim_db([0.9, 0.99, 0.999, 1.0, None]) == [pytest.approx(10.0), pytest.approx(20.0),
                                                         pytest.approx(30.0), None, None]
    x = torch.full((1, 3, 256, 192), 0.2)
    m = quality(x, torch.full_like(x, 0.8), suffix="-8bit")
    assert set(m) == {"psnr-rgb-8bit", "ms-ssim-rgb-8bit", "ms-ssim-rgb-db-8bit"}
    assert m["psnr-rgb-8bit"] == pytest.approx(-10 * math.log10(0.36), abs=1e-5)  # 4.437 dB
    assert m["ms-ssim-rgb-db-8bit"] == pytest.approx(-10 * math.log10(1 - 0.904425), abs=2e-3)  # 10.197 dB
