"""The TCM block: parallel residual-CNN and Swin branches fused by 1x1 convs."""

from __future__ import annotations

import torch
import torch.nn as nn
from compressai.layers import ResidualBlock
from torch import Tensor

from .swin import SwinBlock


class ConvTransBlock(nn.Module):
    """Split 2N channels into a CNN half and a Swin half, process both, fuse, add.

    The conv branch adds its identity twice (``ResidualBlock`` already adds one):
    this is what the published checkpoints were trained with.
    """

    def __init__(self, conv_dim: int, trans_dim: int, head_dim: int, window: int,
                 drop_path: float = 0.0, kind: str = "W"):
        super().__init__()
        self.conv_dim = conv_dim
        self.trans_dim = trans_dim
        self.trans_block = SwinBlock(trans_dim, head_dim, window, drop_path, kind)
        self.conv1_1 = nn.Conv2d(conv_dim + trans_dim, conv_dim + trans_dim, 1, 1, 0, bias=True)
        self.conv1_2 = nn.Conv2d(conv_dim + trans_dim, conv_dim + trans_dim, 1, 1, 0, bias=True)
        self.conv_block = ResidualBlock(conv_dim, conv_dim)

    def forward(self, x: Tensor) -> Tensor:
        conv_x, trans_x = torch.split(self.conv1_1(x), (self.conv_dim, self.trans_dim), dim=1)
        if self.trans_block.uses_window_chunks(x.device):  # the block's kernel policy (layers.config)
            # Chunked inference: both branches write straight into the buffer
            # conv1_2 reads, instead of into tensors that a cat then copies.
            both = torch.empty_like(x)
            torch.add(self.conv_block(conv_x), conv_x, out=both[:, : self.conv_dim])
            self.trans_block.forward_windows(trans_x.permute(0, 2, 3, 1),
                                             out=both[:, self.conv_dim :].permute(0, 2, 3, 1))
            return self.conv1_2(both).add_(x)
        conv_x = self.conv_block(conv_x) + conv_x
        trans_x = self.trans_block(trans_x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv1_2(torch.cat((conv_x, trans_x), dim=1))
