"""Swin blocks, batched and window-chunked, against the reference (layers/swin.py)."""

from __future__ import annotations

import pytest
import torch

from layers import SwinBlock, SwinBlockPair, swin
from tests.layers.reference import assert_float_close, randomise, reference_swin_block


@pytest.mark.parametrize("kind", ["W", "SW"])
def test_swin_block_matches_reference(kind):
    m = SwinBlock(32, 16, 4, kind=kind)
    randomise(m, seed=5)
    x = torch.randn(2, 8, 12, 32)
    assert_float_close(m(x), reference_swin_block(m, x))


def test_swin_block_pair_is_w_then_sw():
    m = SwinBlockPair(32, 16, 8)
    randomise(m, seed=6)
    x = torch.randn(1, 32, 16, 8)
    z = reference_swin_block(m.block_1, x.permute(0, 2, 3, 1))
    want = reference_swin_block(m.block_2, z).permute(0, 3, 1, 2)
    assert m.block_1.kind == "W" and m.block_2.kind == "SW"
    assert_float_close(m(x), want)


@pytest.mark.parametrize("kind", ["W", "SW"])
@pytest.mark.parametrize("chunk", [64 * 32, 2**18], ids=["window-chunks", "one-chunk"])
def test_swin_block_inference_path_matches_reference(kind, chunk, monkeypatch):
    """Without autograd a block runs over chunks of windows gathered in window order,
    reading a permuted NCHW map in place and writing into a given view."""
    monkeypatch.setattr(swin, "CHUNK_ELEMENTS", chunk)
    m = SwinBlock(32, 16, 8, kind=kind).eval()
    randomise(m, seed=7)
    nchw = torch.randn(2, 32, 24, 32)
    want = reference_swin_block(m, nchw.permute(0, 2, 3, 1))
    with torch.no_grad():
        assert m.uses_window_chunks(nchw.device)
        assert_float_close(m(nchw.permute(0, 2, 3, 1)), want)
        target = torch.zeros(2, 48, 24, 32)
        m.forward_windows(nchw.permute(0, 2, 3, 1), out=target[:, 16:].permute(0, 2, 3, 1))
    assert_float_close(target[:, 16:].permute(0, 2, 3, 1), want)
    assert not target[:, :16].any()
    assert not m.uses_window_chunks(nchw.device)  # autograd on: the batched path, for training
