"""Stride-1 convolutions as one matrix product per kernel tap (the float64 entropy arithmetic).

torch has no oneDNN kernel for float64: its CPU convolution unfolds the input
and multiplies with the weights in the slow orientation, and channels-last
inputs cost a conversion besides.  Here the input is zero-padded in NCHW and
each row of channels is flattened, so the map shifted by a kernel tap is a
plain strided view of it: the convolution is ``k*k`` products
``(Cout x C) @ (C x H*(W+2p))`` accumulated in place, with no unfolded copy.
On a 768x512 image's latent, in float64 on this project's CPU, 3x3
convolutions of 16-128 channels run 1.5-1.9x faster than channels-last
``F.conv2d`` (the shipped models' entropy networks); the largest (576 -> 224,
TCM-S) run at the float64 matrix-product rate either way.  The sums are the
same, in another order: in float64 that moves results by ~1e-16 relative,
which the float64 entropy arithmetic is built to tolerate (``models.coding``).
Where it runs is the kernel policy's choice: ``layers.config.apply_kernel_policy``
makes a float64 copy's convolutions GemmConv2d, or plain again.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class GemmConv2d(nn.Conv2d):
    """A ``Conv2d`` whose float64 CPU forward is per-tap matrix products (same parameters; ``layers.config``)."""

    @staticmethod
    def applies_to(conv: nn.Conv2d) -> bool:
        """Whether ``conv``'s shape is one the per-tap products compute: stride 1, an odd square kernel,
        "same" zero padding, no dilation, no groups."""
        k = conv.kernel_size[0]
        return (conv.kernel_size == (k, k) and k % 2 == 1 and conv.padding == (k // 2, k // 2)
                and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
                and conv.padding_mode == "zeros")

    def _uses_gemm(self, x: Tensor) -> bool:
        return x.dtype == torch.float64 and x.device.type == "cpu" and x.dim() == 4 and self.applies_to(self)

    def _taps(self) -> Tensor:
        """(k*k, Cout, C) weight slices: a view once :meth:`store_tap_major` ran, else a copy."""
        w = self.weight.detach()
        return w.permute(2, 3, 0, 1).reshape(-1, w.shape[0], w.shape[1])

    def store_tap_major(self) -> None:
        """Keep the weight's storage as (kh, kw, Cout, C), its shape and values unchanged, so the
        per-tap slices are views (no per-call copy, no second copy of the weights)."""
        with torch.no_grad():
            self.weight.data = self.weight.data.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)

    def forward(self, x: Tensor) -> Tensor:
        if not self._uses_gemm(x):
            return super().forward(x)
        k, p = self.kernel_size[0], self.kernel_size[0] // 2
        b, c, h, w = x.shape
        row = w + 2 * p
        n = h * row  # outputs per image on the padded width; the 2p extra columns are dropped
        # one extra zero row at the bottom keeps the last tap's slice inside the buffer
        padded = (F.pad(x, (p, p, p, p + 1)) if p else x).reshape(b, c, -1)
        taps = self._taps()
        out = x.new_empty(b, self.out_channels, n)
        bias = self.bias.detach()[:, None] if self.bias is not None else x.new_zeros(1, 1)
        for i in range(b):
            acc = out[i]
            for t in range(k * k):
                off = (t // k) * row + t % k
                # out= (not addmm_) so that FLOP counters see the products
                torch.addmm(bias if t == 0 else acc, taps[t], padded[i, :, off:off + n], out=acc)
        # the 2p padding columns of each row are left in memory: consumers take strided views
        return out.view(b, self.out_channels, h, row)[..., :w]
