"""Straightforward implementations of the layers, one step for each rule of the published function.

The window attention (Swin Transformer, Liu et al. 2021, as TCM uses it) in
six rules, each a step of :func:`reference_window_attention`:

1. a shifted block first rolls the image up and left by half a window;
2. the image is cut into p x p windows, tokens row-major inside each;
3. one linear layer gives q, k and v in channel groups of ``head_dim``: the q
   heads, then the k heads, then the v heads;
4. the logits are q.k / sqrt(head_dim) plus the relative-position bias, one
   learned entry per (row offset, column offset) of two tokens;
5. in a shifted block, the last row and the last column of windows hold
   tokens from opposite edges of the image: two tokens on different sides of
   the split (p - p // 2 from the window's start) never attend to each other;
6. softmax, the weighted sum of v, the output linear layer, the windows put
   back in place and the roll undone.

The references materialise the logits, gather the bias on every call and
build the shift mask exactly as rule 5 states, so every optimisation of
``layers/`` is checked against the published function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from layers import ConvTransBlock, SWAtten, SwinBlock, WindowAttention

ATOL = 1e-5


def assert_float_close(got: Tensor, want: Tensor) -> None:
    """Equal to float32 rounding, relative to the size of the values involved."""
    scale = max(1.0, want.abs().max().item())
    torch.testing.assert_close(got, want, atol=ATOL * scale, rtol=1e-4)


def reference_window_attention(m: WindowAttention, x: Tensor) -> Tensor:
    """Rules 1-6 of the module docstring, one step each, no shortcuts."""
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


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial parameters everywhere, so that every rule affects the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
