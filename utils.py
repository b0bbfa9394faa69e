"""Small helpers shared by the command-line tools."""

from __future__ import annotations

import torch.nn.functional as F
from compressai.ops import compute_padding
from torch import Tensor

Padding = tuple[int, int, int, int]


def pad(x: Tensor, p: int = 128) -> tuple[Tensor, Padding]:
    """Zero-pad an NCHW batch, centred, to the next multiple of ``p`` on each side.

    TCM needs sides that are multiples of 128 (8x8 Swin windows on the 1/16
    latent); this is the padding of the paper's evaluation.  Returns the padded
    tensor and ``(left, right, top, bottom)`` for :func:`crop`.
    """
    h, w = x.shape[-2:]
    padding, _ = compute_padding(h, w, min_div=p)
    return F.pad(x, padding, mode="constant", value=0.0), padding


def crop(x: Tensor, padding: Padding) -> Tensor:
    """Undo :func:`pad`."""
    left, right, top, bottom = padding
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
