"""Swin transformer blocks used by the TCM block and by SWAtten."""

from __future__ import annotations

import torch.nn as nn
from timm.layers import DropPath
from torch import Tensor

from .window_attention import WindowAttention


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

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.msa(self.ln1(x)))
        return x + self.drop_path(self.mlp(self.ln2(x)))


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
