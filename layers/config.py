"""Which kernels a layer runs: a policy stored on each layer when it is built, changed only by a rebuild.

The layers compute one function several ways; which way is fastest depends on
the device, the dtype and whether autograd records.  Each layer that has a
choice keeps a :class:`KernelPolicy` in its ``kernels`` attribute, set when it
is built (the default policy) and changed only by :func:`apply_kernel_policy`,
an explicit rebuild of a whole model or copy.  No process-wide setting is read
during a forward call: two models in one process, built or rebuilt under two
policies, each keep their own (a float32 stream decodes exactly only with the
kernels it was encoded with).

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
- **Memory layout** (:meth:`KernelPolicy.layout`, used by ``models.TCM`` and
  its entropy model): inference convolutions run channels-last in float32 and
  bfloat16 (oneDNN's CPU convolutions work in channels-last; fed NCHW they
  convert on every call, and 3x3 convolutions of 64 channels run 1.7x faster
  given channels-last), NCHW in float64 (oneDNN has no float64 kernels); with
  autograd the layout is left alone (torch 2.14's CPU backward of CompressAI's
  ``ResidualBlockWithStride`` crashes on channels-last input).
- **float64 convolutions** (``gemm_float64``): a float64 copy's stride-1
  convolutions on the CPU are :class:`~layers.gemm_conv.GemmConv2d` (per-tap
  matrix products); :func:`apply_kernel_policy` makes them so, or plain again.

The choices change the last bits of float results, never the function.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from .gemm_conv import GemmConv2d

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

    def replace(self, **changes) -> "KernelPolicy":
        """A copy with ``changes``; an unknown field is a TypeError, a bad value a ValueError."""
        return dataclasses.replace(self, **changes)

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

    def layout(self, x: Tensor) -> Tensor:
        """``x`` in the layout this policy gives for its dtype and the grad mode (unchanged with autograd).

        The entropy model normalises each of its inputs with this, so that an
        encoder and a decoder of one policy compute identical parameters.
        """
        fmt = self.memory_format(x.dtype, torch.is_grad_enabled())
        return x if fmt is None else canonical_strides(x.contiguous(memory_format=fmt), fmt)

    def gemm_convolution(self, dtype: torch.dtype, device: torch.device) -> bool:
        """Whether a convolution in ``dtype`` on ``device`` is a :class:`GemmConv2d` under this policy."""
        return self.gemm_float64 and dtype == torch.float64 and device.type == "cpu"


def canonical_strides(x: Tensor, fmt: torch.memory_format) -> Tensor:
    """``x`` (contiguous in ``fmt``) as a view with ``fmt``'s own strides on its size-1 dimensions.

    A tensor is contiguous in a format whatever the strides of its size-1
    dimensions, but torch's convolutions pick their layout from all the
    strides: an image read as a permuted HWC array (batch stride 3) runs as
    NCHW, and every layer after it too, in bfloat16 through a slow conversion
    per convolution.  Only size-1 strides change, so the view holds the same
    elements in the same memory.
    """
    if x.dim() != 4 or x.numel() == 0:
        return x
    n, c, h, w = x.shape
    want = (h * w * c, 1, w * c, c) if fmt == torch.channels_last else (c * h * w, h * w, w, 1)
    return x if x.stride() == want else x.as_strided(x.shape, want)


#: What every layer is built with.
DEFAULT_KERNELS = KernelPolicy()


def apply_kernel_policy(module: nn.Module, policy: KernelPolicy) -> nn.Module:
    """Rebuild ``module`` (in place) to run ``policy``: every layer's ``kernels``, and its float64 convolutions.

    The explicit way to change the kernels of an existing model or copy (a
    ``models.coding.Coder`` copies the policy of the model it is made from).
    Returns ``module``.
    """
    if not isinstance(policy, KernelPolicy):
        raise TypeError(f"a KernelPolicy, not {type(policy).__name__}")
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, whatever mode the caller is in
        for m in module.modules():
            if isinstance(getattr(m, "kernels", None), KernelPolicy):
                m.kernels = policy
            if isinstance(m, nn.Conv2d):
                gemm = policy.gemm_convolution(m.weight.dtype, m.weight.device) and GemmConv2d.applies_to(m)
                if gemm and type(m) is nn.Conv2d:
                    m.__class__ = GemmConv2d
                    m.store_tap_major()
                elif not gemm and type(m) is GemmConv2d:
                    m.__class__ = nn.Conv2d
    return module


def kernels_of(module: nn.Module) -> set[KernelPolicy]:
    """The policies the layers of ``module`` hold (one, unless a caller set layers one by one)."""
    return {m.kernels for m in module.modules() if isinstance(getattr(m, "kernels", None), KernelPolicy)}
