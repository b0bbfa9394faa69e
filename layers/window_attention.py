"""Swin window multi-head self-attention (the "W" and "SW" layers of TCM).

The published layer rebuilds its relative-position index and its shift mask on
every call and materialises the full attention matrix.  Here the index is a
non-persistent buffer built once, the three shift masks are cached per device
and dtype (they depend on no parameter), and attention runs through
``scaled_dot_product_attention`` as 4-D calls with a broadcast (1, heads, L, L)
mask: on CPU the fused kernel is several times slower with a 3-D mask or more
than four dimensions.  Shifted windows only need a mask in the last row and
column of windows, so the windows are grouped into interior / last column /
last row / corner blocks, each attended with one mask; no mask of the size of
the attention matrix is ever built.
"""

from __future__ import annotations

import functools
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import gen_relative_position_index, trunc_normal_
from torch import Tensor

from .config import DEFAULT_KERNELS, MATMUL, SOFTMAX, KernelPolicy


def shift_masks(window: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Additive masks (L, L) for windows in the last row, last column and the corner.

    Tokens that came from opposite sides of the cyclic shift must not see each other.
    """
    s = window - window // 2
    r = torch.arange(window, device=device)
    rows = (r < s).repeat_interleave(window)  # token row < s
    cols = (r < s).repeat(window)  # token col < s
    row_block = rows[:, None] != rows[None, :]
    col_block = cols[:, None] != cols[None, :]
    neg = torch.tensor(float("-inf"), device=device)
    zero = torch.tensor(0.0, device=device)
    as_additive = lambda m: torch.where(m, neg, zero)  # noqa: E731
    return as_additive(row_block), as_additive(col_block), as_additive(row_block | col_block)


def window_blocks(hw: int, ww: int, shifted: bool) -> list[tuple[slice, slice, int | None]]:
    """Blocks of windows that share one mask: (window rows, window cols, mask).

    The mask is an index into :func:`shift_masks`' (row, column, corner), or
    None.  W: the whole grid.  SW: interior, last column, last row, corner
    (empty blocks dropped), so each block attends with a single mask.
    """
    if not shifted:
        return [(slice(0, hw), slice(0, ww), None)]
    rows, last_row = slice(0, hw - 1), slice(hw - 1, hw)
    cols, last_col = slice(0, ww - 1), slice(ww - 1, ww)
    blocks = [(rows, cols, None), (rows, last_col, 1), (last_row, cols, 0), (last_row, last_col, 2)]
    return [(r, c, m) for r, c, m in blocks if r.stop > r.start and c.stop > c.start]


@functools.lru_cache(maxsize=64)  # one image size of TCM needs ten entries (resolutions x W/SW)
def tokens_in_window_order(window: int, shifted: bool, h: int, w: int,
                           device: torch.device) -> tuple[Tensor, tuple[tuple[int, int], ...]]:
    """Tokens of an ``h`` x ``w`` map in window order, block after block of :func:`window_blocks`.

    Returns the row-major pixel index of every token (the cyclic shift
    included, so gathering with it rolls and partitions in one copy, and
    scattering with it undoes both) and each block's span ``(start, end)`` of
    tokens.  It depends on no parameter, so all layers share one cache, and
    the cache is bounded: every new image size adds indices for all the
    resolutions its Swin blocks run at.
    """
    pixels = torch.arange(h * w, device=device).view(h, w)
    if shifted:
        pixels = torch.roll(pixels, shifts=(-(window // 2), -(window // 2)), dims=(0, 1))
    grid = pixels.view(h // window, window, w // window, window).transpose(1, 2)  # (rows, cols, p, p)
    parts = [grid[r, c].reshape(-1) for r, c, _ in window_blocks(h // window, w // window, shifted)]
    ends = list(itertools.accumulate(p.numel() for p in parts))
    return torch.cat(parts), tuple(zip([0, *ends[:-1]], ends))


class WindowAttention(nn.Module):
    """Window attention on NHWC maps whose sides are multiples of ``window``.

    Parameter names and layouts are those of the published checkpoints:
    ``embedding_layer`` (qkv, channel groups [q heads | k heads | v heads]),
    ``relative_position_params`` (heads, 2w-1, 2w-1) and ``linear``.
    """

    def __init__(self, dim: int, head_dim: int, window: int, shifted: bool):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"dim {dim} is not a multiple of head_dim {head_dim}")
        self.dim = dim
        self.head_dim = head_dim
        self.heads = dim // head_dim
        self.window = window
        self.shifted = shifted
        self.scale = head_dim**-0.5
        table = torch.zeros((2 * window - 1) * (2 * window - 1), self.heads)
        trunc_normal_(table, std=0.02)
        # Row-major strides even for one head (where the permuted view already counts as
        # contiguous): DDP's gradient buckets take the parameter's strides, and gradients
        # come row-major, so a (1, 15, 1)-strided table warned on every backward.
        self.relative_position_params = nn.Parameter(
            table.view(2 * window - 1, 2 * window - 1, self.heads).permute(2, 0, 1)
            .clone(memory_format=torch.contiguous_format)
        )
        self.embedding_layer = nn.Linear(dim, 3 * dim, bias=True)
        self.linear = nn.Linear(dim, dim)
        # Flat index into the (2w-1)x(2w-1) table for every (query, key) token pair, row-major tokens.
        self.register_buffer("_rel_index", gen_relative_position_index((window, window)), persistent=False)
        self._masks: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor, Tensor]] = {}
        #: The attention kernel's policy, fixed until ``layers.config.apply_kernel_policy`` rebuilds it.
        self.kernels: KernelPolicy = DEFAULT_KERNELS

    def relative_bias(self) -> Tensor:
        """(heads, L, L) bias gathered from the table (cheap; the index is cached)."""
        return self.relative_position_params.flatten(1)[:, self._rel_index]

    def _shift_masks(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        key = (like.device, like.dtype)
        if key not in self._masks:
            self._masks[key] = tuple(m.to(like.dtype) for m in shift_masks(self.window, like.device))
        return self._masks[key]

    def _groups(self, hw: int, ww: int) -> list[tuple[slice, slice, Tensor | None]]:
        """:func:`window_blocks` with each mask index replaced by its cached mask."""
        blocks = window_blocks(hw, ww, self.shifted)
        if not self.shifted:
            return blocks
        masks = self._shift_masks(self.relative_position_params)
        return [(r, c, None if m is None else masks[m]) for r, c, m in blocks]

    def check_size(self, h: int, w: int) -> None:
        if h % self.window or w % self.window:
            raise ValueError(
                f"feature map {h}x{w} is not a multiple of the window {self.window}: pad the image "
                "to a multiple of 128 first (utils.padding.pad)"
            )

    def window_order(self, h: int, w: int, device: torch.device) -> tuple[Tensor, list[tuple[int, int, Tensor | None]]]:
        """:func:`tokens_in_window_order` for this layer, spans as ``(start, end, mask)``."""
        order, spans = tokens_in_window_order(self.window, self.shifted, h, w, device)
        masks = [m for _, _, m in self._groups(h // self.window, w // self.window)]
        return order, [(start, end, m) for (start, end), m in zip(spans, masks)]

    def attention_masks(self, masks: list[Tensor | None]) -> list[Tensor]:
        """(1, heads, L, L) additive masks: the relative-position bias plus each shift mask.

        Built once per call for all blocks (or spans), not once per SDPA call.
        """
        bias = self.relative_bias()[None]
        return [bias if m is None else bias + m for m in masks]

    def attend(self, windows: Tensor, attn_mask: Tensor) -> Tensor:
        """Attention inside each window: (n, L, c) tokens in, (n, L, c) out.

        ``attn_mask`` is one of :meth:`attention_masks`, shared by all ``n`` windows.  The kernel
        is this layer's policy's (``layers.config``).
        """
        n, L, c = windows.shape
        qkv = self.embedding_layer(windows).view(n, L, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (n, heads, L, hd), views
        attn_mask = attn_mask.to(q.dtype)  # q may be bfloat16 under autocast
        kernel = self.kernels.attention_kernel(q.dtype, q.device, torch.is_grad_enabled() and attn_mask.requires_grad)
        if kernel == SOFTMAX:
            o = torch.softmax(torch.matmul(q * self.scale, k.transpose(-2, -1)) + attn_mask, dim=-1) @ v
        elif kernel == MATMUL:
            o = self._attend_bmm(q, k, v, attn_mask)
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        # SDPA returns (n, heads, L, hd) stored as (n, L, heads, hd): head-major channels for free
        return self.linear(o.transpose(1, 2).reshape(n, L, c))

    def _attend_bmm(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor) -> Tensor:
        """Softmax attention as two batched matmuls: (n, heads, L, hd) in and out."""
        n, heads, L, hd = q.shape
        with torch.autocast(q.device.type, enabled=False):
            scores = torch.baddbmm(attn_mask.expand(n, heads, L, L).reshape(n * heads, L, L),
                                   q.reshape(n * heads, L, hd), k.reshape(n * heads, L, hd).transpose(1, 2),
                                   alpha=self.scale)
            return torch.bmm(torch.softmax(scores, dim=-1), v.reshape(n * heads, L, hd)).view(n, heads, L, hd)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        p = self.window
        self.check_size(h, w)
        if self.shifted:
            x = torch.roll(x, shifts=(-(p // 2), -(p // 2)), dims=(1, 2))
        hw, ww, L = h // p, w // p, p * p
        grid = x.view(b, hw, p, ww, p, c).transpose(2, 3)  # (b, hw, ww, p, p, c), a view
        blocks = self._groups(hw, ww)
        # One 4-D SDPA call per mask block (the fused CPU kernel is only fast on
        # 4-D inputs with a broadcast 4-D mask).
        out = x.new_empty(b, hw, ww, p, p, c) if len(blocks) > 1 else None
        attn_masks = self.attention_masks([m for _, _, m in blocks])
        for (r, cl, _), attn_mask in zip(blocks, attn_masks):
            nh, nw = r.stop - r.start, cl.stop - cl.start
            o = self.attend(grid[:, r, cl].reshape(-1, L, c), attn_mask).view(b, nh, nw, p, p, c)
            if out is None:
                out = o
            else:
                out[:, r, cl] = o
        out = out.transpose(2, 3).reshape(b, h, w, c)
        if self.shifted:
            out = torch.roll(out, shifts=(p // 2, p // 2), dims=(1, 2))
        return out
