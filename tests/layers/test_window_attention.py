"""Window attention (W / SW) against the step-by-step reference (layers/window_attention.py; tests/layers/reference.py)."""

from __future__ import annotations

import math

import pytest
import torch

from layers import WindowAttention
from tests.layers.reference import assert_float_close, randomise, reference_window_attention

# (window, head_dim, dim, window grid rows, window grid cols)
GRIDS = [(8, 16, 32, 1, 1), (8, 16, 32, 1, 3), (8, 16, 32, 3, 1), (8, 8, 32, 2, 3),
         (4, 32, 64, 1, 1), (4, 32, 64, 1, 4), (4, 32, 64, 4, 1), (4, 16, 64, 3, 2)]


@pytest.mark.parametrize("shifted", [False, True], ids=["W", "SW"])
@pytest.mark.parametrize("window,head_dim,dim,nh,nw", GRIDS)
def test_window_attention_matches_reference(window, head_dim, dim, nh, nw, shifted):
    torch.manual_seed(nh * 10 + nw)
    m = WindowAttention(dim, head_dim, window, shifted)
    randomise(m, seed=window + nh)
    x = torch.randn(2, nh * window, nw * window, dim)
    want = reference_window_attention(m, x)
    assert_float_close(m(x), want)
    with torch.inference_mode():
        assert_float_close(m.eval()(x), want)


def test_shift_mask_matters():
    """The reference mask is not a no-op: dropping it changes the output."""
    m = WindowAttention(32, 16, 8, shifted=True)
    randomise(m, seed=1)
    x = torch.randn(1, 16, 16, 32)
    unmasked = WindowAttention(32, 16, 8, shifted=False)
    unmasked.load_state_dict(m.state_dict())
    rolled = torch.roll(x, (-4, -4), (1, 2))
    without_mask = torch.roll(unmasked(rolled), (4, 4), (1, 2))
    assert (m(x) - without_mask).abs().max() > 1e-2


def test_window_attention_gradients_match_reference():
    m = WindowAttention(32, 16, 8, shifted=True)
    randomise(m, seed=3)
    x = torch.randn(1, 16, 24, 32, requires_grad=True)
    m(x).square().sum().backward()
    got = [x.grad.clone()] + [p.grad.clone() for p in m.parameters()]
    x.grad = None
    m.zero_grad()
    reference_window_attention(m, x).square().sum().backward()
    want = [x.grad] + [p.grad for p in m.parameters()]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def test_relative_position_index_is_the_spec_rule():
    w = 4
    idx = WindowAttention(32, 16, w, shifted=False)._rel_index.view(w, w, w, w)  # (ri, ci, rj, cj)
    for ri, ci, rj, cj in [(0, 0, 3, 3), (3, 1, 0, 2), (2, 2, 2, 2)]:
        assert idx[ri, ci, rj, cj] == (ri - rj + w - 1) * (2 * w - 1) + (ci - cj + w - 1)


def test_window_attention_refuses_sizes_off_the_window():
    m = WindowAttention(32, 16, 8, shifted=False)
    with pytest.raises(ValueError, match="multiple of the window"):
        m(torch.randn(1, 12, 16, 32))


def test_window_order_is_one_bounded_cache_for_all_layers():
    """Layers of one window and shift share the token order of a size (one cache, not one per layer)."""
    a, b = WindowAttention(32, 16, 8, shifted=True), WindowAttention(64, 32, 8, shifted=True)
    order, spans = a.window_order(24, 32, torch.device("cpu"))
    assert b.window_order(24, 32, torch.device("cpu"))[0] is order
    assert sorted(order.tolist()) == list(range(24 * 32)) and spans[-1][1] == 24 * 32
    assert WindowAttention(32, 16, 8, shifted=False).window_order(24, 32, torch.device("cpu"))[0] is not order


def test_window_attention_state_dict_is_the_published_one():
    m = WindowAttention(64, 16, 8, shifted=True)
    m(torch.randn(1, 16, 16, 64))  # no cache may leak into the state_dict
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == {
        "relative_position_params": (4, 15, 15),
        "embedding_layer.weight": (192, 64), "embedding_layer.bias": (192,),
        "linear.weight": (64, 64), "linear.bias": (64,),
    }
    assert math.isclose(m.scale, 16**-0.5)


@pytest.mark.parametrize("shifted", [False, True], ids=["W", "SW"])
def test_bfloat16_attention_matches_the_reference_to_bfloat16_accuracy(shifted):
    """The bfloat16 transforms' attention (batched matmuls, not the fused kernel) computes the same function."""
    window, head_dim, dim, nh, nw = 8, 8, 32, 2, 3
    m = WindowAttention(dim, head_dim, window, shifted)
    randomise(m, seed=3)
    x = torch.randn(2, nh * window, nw * window, dim)
    want = reference_window_attention(m, x)
    with torch.inference_mode():
        got = m.to(torch.bfloat16).eval()(x.to(torch.bfloat16)).float()
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).norm() / want.norm() < 2e-2
    # the shift mask is applied: without it the bfloat16 output would be far off
    assert (got - want).abs().max() < 0.1 * want.abs().max()
