"""The TCM block (ConvTransBlock) against the reference (layers/tcm_block.py)."""

from __future__ import annotations

import pytest
import torch

from layers import ConvTransBlock
from tests.layers.reference import assert_float_close, reference_conv_trans_block


@pytest.mark.parametrize("kind", ["W", "SW"])
def test_conv_trans_block_matches_reference(kind):
    m = ConvTransBlock(16, 32, 16, 8, 0.0, kind)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "msa" in name or "mlp" in name or "conv1_" in name:
                p.normal_(0, 0.2)
    x = torch.randn(2, 48, 16, 24)
    want = reference_conv_trans_block(m, x)
    assert_float_close(m(x), want)
    with torch.no_grad():  # the inference path
        assert_float_close(m(x), want)
        assert_float_close(m(x.contiguous(memory_format=torch.channels_last)), want)
