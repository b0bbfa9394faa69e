"""The layers against straightforward implementations written from ARCHITECTURE.md.

The references materialise the logits, gather the relative-position bias on
every call and build the shift mask exactly as the spec's rule 5 states, so
every optimisation of ``layers/`` is checked against the published function.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from layers import swin
from layers import ConvTransBlock, SWAtten, SwinBlock, SwinBlockPair, WindowAttention
from layers.window_attention import relative_position_index, tokens_in_window_order

ATOL = 1e-5


def assert_float_close(got: Tensor, want: Tensor) -> None:
    """Equal to float32 rounding, relative to the size of the values involved."""
    scale = max(1.0, want.abs().max().item())
    torch.testing.assert_close(got, want, atol=ATOL * scale, rtol=1e-4)


def reference_window_attention(m: WindowAttention, x: Tensor) -> Tensor:
    """Rules 1-6 of the spec's window attention, one step each, no shortcuts."""
    b, h, w, c = x.shape
    p, heads, hd = m.window, m.heads, m.head_dim
    L = p * p
    if m.shifted:  # rule 1
        x = torch.roll(x, shifts=(-(p // 2), -(p // 2)), dims=(1, 2))
    nh, nw = h // p, w // p
    # rule 2: windows, tokens row-major inside each window
    tokens = x.reshape(b, nh, p, nw, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh, nw, L, c)
    # rule 3: channel groups of head_dim: q heads, then k heads, then v heads
    qkv = m.embedding_layer(tokens).reshape(b, nh, nw, L, 3 * heads, hd)
    q, k, v = qkv[..., :heads, :], qkv[..., heads : 2 * heads, :], qkv[..., 2 * heads :, :]
    # rule 4: logits with the relative-position bias gathered element by element
    logits = torch.einsum("bxyihd,bxyjhd->bxyhij", q, k) * hd**-0.5
    r = torch.arange(L) // p
    col = torch.arange(L) % p
    table = m.relative_position_params
    bias = table[:, (r[:, None] - r[None, :] + p - 1), (col[:, None] - col[None, :] + p - 1)]
    logits = logits + bias  # (heads, L, L) broadcast
    if m.shifted:  # rule 5
        s = p - p // 2
        row_split = (r < s)[:, None] != (r < s)[None, :]
        col_split = (col < s)[:, None] != (col < s)[None, :]
        mask = torch.zeros(nh, nw, L, L, dtype=torch.bool)
        mask[-1, :] |= row_split
        mask[:, -1] |= col_split
        logits = logits.masked_fill(mask[None, :, :, None], float("-inf"))
    # rule 6
    probs = torch.softmax(logits, dim=-1)
    out = torch.einsum("bxyhij,bxyjhd->bxyihd", probs, v).reshape(b, nh, nw, L, c)
    out = m.linear(out)
    out = out.reshape(b, nh, nw, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    if m.shifted:
        out = torch.roll(out, shifts=(p // 2, p // 2), dims=(1, 2))
    return out


def reference_swin_block(m: SwinBlock, x: Tensor) -> Tensor:
    x = x + reference_window_attention(m.msa, m.ln1(x))
    h = F.linear(m.ln2(x), m.mlp[0].weight, m.mlp[0].bias)
    h = F.gelu(h, approximate="none")
    return x + F.linear(h, m.mlp[2].weight, m.mlp[2].bias)


def reference_conv_trans_block(m: ConvTransBlock, x: Tensor) -> Tensor:
    t = m.conv1_1(x)
    c, s = t[:, : m.conv_dim], t[:, m.conv_dim :]
    c = m.conv_block(c) + c  # ResidualBlock adds its own identity too: twice, on purpose
    s = reference_swin_block(m.trans_block, s.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return x + m.conv1_2(torch.cat([c, s], dim=1))


def reference_swatten(m: SWAtten, x: Tensor) -> Tensor:
    x = m.in_conv(x)
    z = x.permute(0, 2, 3, 1)
    z = reference_swin_block(m.non_local_block.block_1, z)
    z = reference_swin_block(m.non_local_block.block_2, z).permute(0, 3, 1, 2)
    return m.out_conv(m.conv_a(x) * torch.sigmoid(m.conv_b(z)) + x)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial parameters everywhere, so that every rule affects the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


# (window, head_dim, dim, window grid rows, window grid cols)
GRIDS = [(8, 16, 32, 1, 1), (8, 16, 32, 1, 3), (8, 16, 32, 3, 1), (8, 8, 32, 2, 3),
         (4, 32, 64, 1, 1), (4, 32, 64, 1, 4), (4, 32, 64, 4, 1), (4, 16, 64, 3, 2)]


@pytest.mark.parametrize("shifted", [False, True], ids=["W", "SW"])
@pytest.mark.parametrize("window,head_dim,dim,nh,nw", GRIDS)
def test_window_attention_matches_reference(window, head_dim, dim, nh, nw, shifted):
    torch.manual_seed(nh * 10 + nw)
    m = WindowAttention(dim, head_dim, window, shifted)
    _randomise(m, seed=window + nh)
    x = torch.randn(2, nh * window, nw * window, dim)
    want = reference_window_attention(m, x)
    assert_float_close(m(x), want)
    with torch.inference_mode():
        assert_float_close(m.eval()(x), want)


def test_shift_mask_matters():
    """The reference mask is not a no-op: dropping it changes the output."""
    m = WindowAttention(32, 16, 8, shifted=True)
    _randomise(m, seed=1)
    x = torch.randn(1, 16, 16, 32)
    unmasked = WindowAttention(32, 16, 8, shifted=False)
    unmasked.load_state_dict(m.state_dict())
    rolled = torch.roll(x, (-4, -4), (1, 2))
    without_mask = torch.roll(unmasked(rolled), (4, 4), (1, 2))
    assert (m(x) - without_mask).abs().max() > 1e-2


def test_window_attention_gradients_match_reference():
    m = WindowAttention(32, 16, 8, shifted=True)
    _randomise(m, seed=3)
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
    idx = relative_position_index(w).view(w, w, w, w)  # (ri, ci, rj, cj)
    for ri, ci, rj, cj in [(0, 0, 3, 3), (3, 1, 0, 2), (2, 2, 2, 2)]:
        assert idx[ri, ci, rj, cj] == (ri - rj + w - 1) * (2 * w - 1) + (ci - cj + w - 1)


def test_window_attention_refuses_sizes_off_the_window():
    m = WindowAttention(32, 16, 8, shifted=False)
    with pytest.raises(ValueError, match="multiple of the window"):
        m(torch.randn(1, 12, 16, 32))


@pytest.mark.parametrize("kind", ["W", "SW"])
def test_swin_block_matches_reference(kind):
    m = SwinBlock(32, 16, 4, kind=kind)
    _randomise(m, seed=5)
    x = torch.randn(2, 8, 12, 32)
    assert_float_close(m(x), reference_swin_block(m, x))


def test_swin_block_pair_is_w_then_sw():
    m = SwinBlockPair(32, 16, 8)
    _randomise(m, seed=6)
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
    _randomise(m, seed=7)
    nchw = torch.randn(2, 32, 24, 32)
    want = reference_swin_block(m, nchw.permute(0, 2, 3, 1))
    with torch.no_grad():
        assert m.uses_window_chunks()
        assert_float_close(m(nchw.permute(0, 2, 3, 1)), want)
        target = torch.zeros(2, 48, 24, 32)
        m.forward_windows(nchw.permute(0, 2, 3, 1), out=target[:, 16:].permute(0, 2, 3, 1))
    assert_float_close(target[:, 16:].permute(0, 2, 3, 1), want)
    assert not target[:, :16].any()
    assert not m.uses_window_chunks()  # autograd on: the batched path, for training


def test_window_order_is_one_bounded_cache_for_all_layers():
    """Layers of one window and shift share the token order of a size; new sizes evict old ones."""
    a, b = WindowAttention(32, 16, 8, shifted=True), WindowAttention(64, 32, 8, shifted=True)
    order, spans = a.window_order(24, 32, torch.device("cpu"))
    assert b.window_order(24, 32, torch.device("cpu"))[0] is order
    assert sorted(order.tolist()) == list(range(24 * 32)) and spans[-1][1] == 24 * 32
    assert WindowAttention(32, 16, 8, shifted=False).window_order(24, 32, torch.device("cpu"))[0] is not order
    limit = tokens_in_window_order.cache_info().maxsize
    for side in range(1, limit + 2):
        a.window_order(8, 8 * side, torch.device("cpu"))
    assert tokens_in_window_order.cache_info().currsize == limit


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


@pytest.mark.parametrize("side", [(8, 8), (16, 24)])
def test_swatten_matches_reference(side):
    m = SWAtten(48, 48, 16, 8, 0.0, inter_dim=32)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "non_local_block" in name:
                p.normal_(0, 0.2)
    x = torch.randn(1, 48, *side)
    assert_float_close(m(x), reference_swatten(m, x))
