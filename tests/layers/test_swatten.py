"""SWAtten against the reference (layers/swatten.py)."""

from __future__ import annotations

import pytest
import torch

from layers import SWAtten
from tests.layers.reference import assert_float_close, reference_swatten


@pytest.mark.parametrize("side", [(8, 8), (16, 24)])
def test_swatten_matches_reference(side):
    m = SWAtten(48, 48, 16, 8, 0.0, inter_dim=32)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "non_local_block" in name:
                p.normal_(0, 0.2)
    x = torch.randn(1, 48, *side)
    assert_float_close(m(x), reference_swatten(m, x))
