"""Where the bits go: per-pixel bit-allocation maps and the share of bits per slice and channel.

The likelihood of each coded latent is its estimated cost: -log2 p bits.  A y
latent covers a 16x16 block of pixels and a z latent a 64x64 block, so
spreading each latent's bits over its block gives a map in bits per pixel
whose sum is the image's estimated size (the real stream adds the coder's few
bytes of overhead).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

#: Pixels per latent side: y is at 1/16 of the image, z at 1/64.
STRIDES = {"y": 16, "z": 64}


def latent_bits(likelihoods: Tensor) -> Tensor:
    """-log2 of each likelihood: (B, C, h, w) bits, float64."""
    return -torch.log2(likelihoods.detach().to(torch.float64))


def bit_map(bits: Tensor, stride: int) -> Tensor:
    """(H, W) bits per pixel of the first image: each latent's bits (:func:`latent_bits`, summed over
    channels) spread over its block."""
    bits = bits[0].sum(dim=0)  # (h, w)
    return bits.repeat_interleave(stride, 0).repeat_interleave(stride, 1) / (stride * stride)


def channel_shares(channel_bits: Tensor, num_slices: int) -> dict[str, list[float]]:
    """Share of the y bits in each slice and in each channel (each list sums to 1)."""
    total = float(channel_bits.sum()) or 1.0
    per_slice = channel_bits.view(num_slices, -1).sum(dim=1)
    return {"slice-share": [round(float(v) / total, 6) for v in per_slice],
            "channel-share": [round(float(v) / total, 6) for v in channel_bits]}


def mean_shares(rows: list[dict[str, Any]], key: str) -> list[float] | None:
    """The average over images of a share list (images without it are left out)."""
    lists = [r[key] for r in rows if r.get(key)]
    if not lists:
        return None
    return [round(float(v), 6) for v in np.mean(np.array(lists, dtype=float), axis=0)]
