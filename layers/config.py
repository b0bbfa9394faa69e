"""Which kernels the layers run, by device, dtype and grad mode: one policy, set by a caller.

The layers compute one function several ways; which way is fastest depends on
the device, the dtype and whether autograd records.  Each layer asks the
current :class:`KernelPolicy` instead of deciding on its own:

- **Attention** (:meth:`KernelPolicy.attention_kernel`, ``WindowAttention``):
  torch's fused ``scaled_dot_product_attention``; on the CPU in bfloat16,
  batched matrix products instead (the fused CPU kernel is slow on 64-token
  windows in bfloat16, slower than in float32: the products run 2-2.7x faster
  than float32 SDPA on TCM-S's windows); and whenever a learned bias needs a
  gradient, plain softmax attention (the fused CPU kernel has no gradient for
  the bias, and SDPA's fallback checks every mask for fully masked rows).
- **Window chunks** (:meth:`KernelPolicy.chunks_windows`, ``SwinBlock``,
  ``ConvTransBlock``): CPU inference runs a Swin block a cache-sized chunk of
  windows at a time; on a GPU, with autograd, or with a random drop-path, one
  batched call per mask block.
- **Memory layout** (:meth:`KernelPolicy.memory_format`,
  :func:`inference_layout`): inference convolutions run channels-last in
  float32 and bfloat16 (oneDNN's CPU convolutions work in channels-last; fed
  NCHW they convert on every call, and 3x3 convolutions of 64 channels run
  1.7x faster given channels-last), NCHW in float64 (oneDNN has no float64
  kernels); with autograd the layout is left alone (torch 2.14's CPU backward
  of CompressAI's ``ResidualBlockWithStride`` crashes on channels-last input).
- **float64 convolutions** (:meth:`KernelPolicy.gemm_convolution`,
  ``GemmConv2d``): per-tap matrix products on the CPU.

The choices change the last bits of float results, never the function.  The
layout also picks the convolution algorithm: the float32 entropy arithmetic
decodes exactly only under the policy it was encoded with, while the float64
one (``models.coding``) decodes under either.

The policy is process-wide: :func:`set_kernel_policy` sets it (for a tool or a
worker process), ``with kernel_policy(channels_last=False): ...`` sets it for
a block of code and restores the previous one after.  The default reproduces
the choices above.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

#: Attention kernels (:meth:`KernelPolicy.attention_kernel`'s answers).
SDPA, MATMUL, SOFTMAX = "sdpa", "matmul", "softmax"
#: ``KernelPolicy.attention`` values: the default choice, or one kernel wherever it may run.
ATTENTION_CHOICES = ("auto", SDPA, MATMUL, SOFTMAX)


@dataclass(frozen=True)
class KernelPolicy:
    """The kernel choices; each field switches one of them (see the module's text for why each is the default).

    ``attention``: "auto" (fused SDPA, batched matrix products for bfloat16 on
    the CPU), or "sdpa", "matmul", "softmax" everywhere (a learned bias that
    needs a gradient always gets plain softmax attention).
    ``window_chunks``: CPU inference runs Swin blocks over chunks of windows.
    ``channels_last``: float32 and bfloat16 inference convolutions run channels-last.
    ``gemm_float64``: float64 convolutions on the CPU run as per-tap matrix products.
    """

    attention: str = "auto"
    window_chunks: bool = True
    channels_last: bool = True
    gemm_float64: bool = True

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention {self.attention!r}: choose from {', '.join(ATTENTION_CHOICES)}")

    def attention_kernel(self, dtype: torch.dtype, device: torch.device, bias_needs_grad: bool) -> str:
        """:data:`SDPA`, :data:`MATMUL` or :data:`SOFTMAX` for attention in ``dtype`` on ``device``."""
        if bias_needs_grad:
            return SOFTMAX
        if self.attention != "auto":
            return self.attention
        return MATMUL if dtype == torch.bfloat16 and device.type == "cpu" else SDPA

    def chunks_windows(self, device: torch.device, grad_enabled: bool, random_drop_path: bool) -> bool:
        """Whether a Swin block runs chunk by chunk of windows.

        Only inference on the CPU: compress and decompress on one device then
        always compute the same function.
        """
        return self.window_chunks and device.type == "cpu" and not grad_enabled and not random_drop_path

    def memory_format(self, dtype: torch.dtype, grad_enabled: bool) -> torch.memory_format | None:
        """The layout inference convolutions run in; None: leave the tensor as it is (autograd)."""
        if grad_enabled:
            return None
        if not self.channels_last or dtype == torch.float64:
            return torch.contiguous_format
        return torch.channels_last

    def gemm_convolution(self, dtype: torch.dtype, device: torch.device) -> bool:
        """Whether ``GemmConv2d`` computes with per-tap matrix products (else torch's convolution)."""
        return self.gemm_float64 and dtype == torch.float64 and device.type == "cpu"


_current = [KernelPolicy()]


def get_kernel_policy() -> KernelPolicy:
    """The policy the layers follow now."""
    return _current[0]


def set_kernel_policy(policy: KernelPolicy | None = None, **changes) -> KernelPolicy:
    """Follow ``policy`` (default: the current one) with ``changes`` from now on; returns the previous policy.

    ``set_kernel_policy(KernelPolicy())`` restores the default.  An unknown
    field is a TypeError, a bad value a ValueError.
    """
    previous = _current[0]
    _current[0] = dataclasses.replace(policy or previous, **changes)
    return previous


@contextlib.contextmanager
def kernel_policy(policy: KernelPolicy | None = None, **changes) -> Iterator[KernelPolicy]:
    """``with kernel_policy(channels_last=False): ...``: a policy for a block of code, the previous one after."""
    previous = set_kernel_policy(policy, **changes)
    try:
        yield _current[0]
    finally:
        _current[0] = previous


def inference_layout(x: Tensor) -> Tensor:
    """``x`` in the layout the policy gives for its dtype and the grad mode (unchanged with autograd).

    The entropy model normalises each of its inputs with this, so that encoder
    and decoder under one policy compute identical parameters.
    """
    fmt = get_kernel_policy().memory_format(x.dtype, torch.is_grad_enabled())
    return x if fmt is None else x.contiguous(memory_format=fmt)
