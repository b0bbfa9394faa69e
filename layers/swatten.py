"""SWAtten: CompressAI's attention block with a Swin pair as its non-local branch."""

from __future__ import annotations

import torch
from compressai.layers import AttentionBlock, conv1x1
from torch import Tensor

from .swin import SwinBlockPair


class SWAtten(AttentionBlock):
    """Channel-squeezed attention of the entropy model.

    in_conv squeezes to ``inter_dim`` channels; the trunk (``conv_a``) is gated by
    a sigmoid of the Swin branch (``conv_b`` after ``non_local_block``).
    """

    def __init__(self, in_dim: int, out_dim: int, head_dim: int = 16, window: int = 8,
                 drop_path: float = 0.0, inter_dim: int = 128):
        super().__init__(N=inter_dim)
        self.non_local_block = SwinBlockPair(inter_dim, head_dim, window, drop_path)
        self.in_conv = conv1x1(in_dim, inter_dim)
        self.out_conv = conv1x1(inter_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_conv(x)
        z = self.non_local_block(x)
        out = self.conv_a(x) * torch.sigmoid(self.conv_b(z)) + x
        return self.out_conv(out)
