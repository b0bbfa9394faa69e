"""Centred padding to multiples of 128 and cropping back (utils/padding.py)."""

from __future__ import annotations

import pytest
import torch

from utils.padding import crop, pad, pad_replicate


@pytest.mark.parametrize("h,w", [(1, 1), (100, 37), (128, 128), (130, 257), (512, 768)])
def test_pad_is_centred_and_crop_undoes_it(h, w):
    x = torch.rand(1, 3, h, w) + 1  # strictly positive, so padding zeros are visible
    xp, (left, right, top, bottom) = pad(x, 128)
    assert xp.shape[-2] % 128 == 0 and xp.shape[-1] % 128 == 0
    assert xp.shape[-2] - h < 128 and xp.shape[-1] - w < 128
    assert left == (xp.shape[-1] - w) // 2 and right == xp.shape[-1] - w - left
    assert top == (xp.shape[-2] - h) // 2 and bottom == xp.shape[-2] - h - top
    assert (xp[..., top : top + h, left : left + w] == x).all()
    assert xp.sum() == pytest.approx(x.sum().item(), rel=1e-5)  # the rest is zeros
    assert torch.equal(crop(xp, (left, right, top, bottom)), x)


@pytest.mark.parametrize("h,w", [(1, 1), (100, 37), (128, 128), (130, 257)])
def test_replicate_padding_repeats_the_edges_where_pad_puts_zeros(h, w):
    x = torch.rand(1, 3, h, w) + 1
    xp, padding = pad_replicate(x, 128)
    assert padding == pad(x, 128)[1] and xp.shape == pad(x, 128)[0].shape  # the same geometry
    left, right, top, bottom = padding
    assert torch.equal(crop(xp, padding), x)
    rows = xp[..., top : top + h, :]  # each padded row repeats its edge pixels
    assert torch.equal(rows[..., :left], x[..., :1].expand(-1, -1, -1, left))
    assert torch.equal(rows[..., left + w :], x[..., -1:].expand(-1, -1, -1, right))
    assert torch.equal(xp[..., :top, :], xp[..., top : top + 1, :].expand(-1, -1, top, -1))
    assert torch.equal(xp[..., top + h :, :], xp[..., top + h - 1 : top + h, :].expand(-1, -1, bottom, -1))
