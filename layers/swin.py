"""Swin transformer blocks used by the TCM block and by SWAtten."""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import DropPath
from torch import Tensor

from .config import DEFAULT_KERNELS, KernelPolicy
from .window_attention import WindowAttention

#: Inference runs a Swin block over chunks of about this many activations
#: (tokens x channels): the 4x-wide MLP hidden layer of a chunk then stays in
#: cache instead of making a round trip through memory for the whole map.
CHUNK_ELEMENTS = 2**18


class SwinBlock(nn.Module):
    """Pre-norm transformer block on NHWC maps: x + msa(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, dim: int, head_dim: int, window: int, drop_path: float = 0.0, kind: str = "W"):
        super().__init__()
        if kind not in ("W", "SW"):
            raise ValueError(f"kind must be 'W' or 'SW', not {kind!r}")
        self.kind = kind
        self.ln1 = nn.LayerNorm(dim)
        self.msa = WindowAttention(dim, head_dim, window, shifted=kind == "SW")
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        #: Whether inference runs window chunks: fixed until ``layers.config.apply_kernel_policy`` rebuilds it.
        self.kernels: KernelPolicy = DEFAULT_KERNELS

    def uses_window_chunks(self, device: torch.device) -> bool:
        """Whether a call on ``device`` runs chunk by chunk of windows: this block's policy's answer
        (``layers.config``) for the grad mode and whether drop-path is random now."""
        random_drop_path = self.training and not isinstance(self.drop_path, nn.Identity)
        return self.kernels.chunks_windows(device, torch.is_grad_enabled(), random_drop_path)

    def forward(self, x: Tensor) -> Tensor:
        if self.uses_window_chunks(x.device):
            return self.forward_windows(x)
        x = x + self.drop_path(self.msa(self.ln1(x)))
        return x + self.drop_path(self.mlp(self.ln2(x)))

    def forward_windows(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """The block, a chunk of whole windows at a time (inference).

        Norms, MLP and residuals act per token and attention per window, so
        each chunk is independent: it is gathered in window order (the cyclic
        shift and the window partition are one index), runs the whole block
        while it is in cache, and is scattered back to its pixels (into
        ``out``, an NHWC view, when given).
        ``x`` may be any NHWC view whose rows and columns merge (a permuted
        NCHW map included), so no layout copy of the whole map is made.
        """
        b, h, w, c = x.shape
        self.msa.check_size(h, w)
        order, spans = self.msa.window_order(h, w, x.device)
        src = x.flatten(1, 2)
        if out is None:
            out = x.new_empty(b, h, w, c)
        dst = out.view(b, h * w, c)
        # index_copy_ into a strided view (the TCM block's half of a channels-last map) takes
        # a slow path, 19x slower per chunk here: scatter into a contiguous buffer, then copy once.
        scatter = dst if dst.is_contiguous() else x.new_empty(b, h * w, c)
        L = self.msa.window**2
        step = max(1, CHUNK_ELEMENTS // (L * c * b)) * L
        attn_masks = self.msa.attention_masks([m for _, _, m in spans])
        for (start, end, _), attn_mask in zip(spans, attn_masks):
            for a in range(start, end, step):
                idx = order[a : min(a + step, end)]
                n = idx.numel()
                t = src[:, idx]
                t = t + self.msa.attend(self.ln1(t).view(b * n // L, L, c), attn_mask).view(b, n, c)
                t = t + self.mlp(self.ln2(t))
                scatter.index_copy_(1, idx, t)
        if scatter is not dst:
            dst.copy_(scatter)
        return out


class SwinBlockPair(nn.Module):
    """A W block followed by an SW block, NCHW in and out (SWAtten's ``non_local_block``).

    The published version pads inputs whose side is <= window and then fails on
    them; here any side that is a multiple of the window (including the window
    itself, i.e. a 128-pixel image side) runs unpadded, which is exactly what
    the checkpoints compute for every size they support.
    """

    def __init__(self, dim: int, head_dim: int, window: int, drop_path: float = 0.0):
        super().__init__()
        self.block_1 = SwinBlock(dim, head_dim, window, drop_path, "W")
        self.block_2 = SwinBlock(dim, head_dim, window, drop_path, "SW")

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = self.block_2(self.block_1(x))
        return x.permute(0, 3, 1, 2)
