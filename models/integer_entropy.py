"""The entropy model in exact integer arithmetic: quantised after training, the same integers on every machine.

:class:`IntegerEntropyModel` is a copy of a float entropy model whose
parameter networks (hyper-synthesis, SWAtten with its Swin pair, mean, scale
and LRP transforms) compute with the exact integer layers of
``layers.integer``: int8 activations with a scale per channel, 8-bit
per-channel weights, int32 sums, exact requantisation, table-driven GELU,
LeakyReLU, sigmoid, tanh and exp, integer layer norm and softmax, 16-bit
residual streams.  Between the networks values cross as exact dyadic floats
(integers times powers of two), so the per-slice step of the float model
runs unchanged; the means and scales it hands the coder are exact multiples
of 2**-12.

**Parameters.**  The integer weights, biases, requantisation multipliers and
tables follow from the model's float weights and a set of *integer
parameters*: activation scales (float64) and power-of-two exponents, one
entry per quantisation point (:class:`Parameters`).  Calibration
(:meth:`IntegerEntropyModel.calibrated`) sets them from what the float
model's networks see on a handful of images; a release file stores them
(``models.release``), and every machine builds the same integers from them
with IEEE-754 additions, multiplications, divisions and square roots, which
round exactly (no library exp or erf: ``layers.integer``).  Parameters that
would make a sum leave its exact range, or that are not positive finite
scales, are refused when the model is built.
"""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.layers import GDN, ResidualBlockUpsample
from torch import Tensor

from layers import ConvTransBlock, SWAtten, SwinBlock
from layers.integer import (ACT_MAX, STREAM_MAX, WIDE_MAX, ExactOut, IntConv3x3, IntegerBoundError, IntLinear,
                            RatioRequantizer, ShiftOut, Table, TableOut, exp2, exp_, fixed_multiplier, fixed_multipliers,
                            gelu_, half_tanh_, isqrt, layer_norm_int8, leaky_relu_, pow2_exponents, quantize_weights,
                            requantize, shift_right, sigmoid_, split_wide)
from layers.window_attention import shift_masks, tokens_in_window_order, window_blocks
from utils.process import single_threaded

from .entropy_model import ChannelEntropyModel

#: Integer parameters' format; a stored set of another version is refused.
VERSION = 1
#: Table inputs: integers in [-GRID, GRID] on a grid per channel.
GRID = 255
#: Means, scales and the LRP residual leave the networks as multiples of 2**-OUT_BITS.
OUT_BITS = 12
#: Largest |output| on that grid (2**23: exact in float32).
OUT_MAX = 2**23
#: exp tables of the softmax: e = round(2**EXP_BITS * exp(-d * logit scale)), at most EXP_ENTRIES entries (the
#: logit grid coarsened by a shift where it is finer).
EXP_BITS = 10
EXP_ENTRIES = 2**11
#: The additive mask of a shifted window on the logits' integer grid (past the exp table's last entry, 0).
MASKED = -(2**22)

Calibration = list[Tensor] | None


class IntegerParameterError(IntegerBoundError):
    """Stored integer parameters that cannot build the model (missing, damaged or of another version)."""


class Parameters:
    """The scales and exponents of an integer entropy model, by name: read when stored, computed when calibrating."""

    def __init__(self, stored: dict[str, Tensor] | None = None):
        self.calibrating = stored is None
        self.values: dict[str, Tensor] = {}
        if stored is not None:
            version = stored.get("version")
            if not isinstance(version, Tensor) or version.numel() != 1 or int(version) != VERSION:
                raise IntegerParameterError(f"integer parameters of format {version!r}; this version reads {VERSION}")
            if not all(isinstance(v, Tensor) for v in stored.values()):
                raise IntegerParameterError("integer parameters hold something other than tensors")
            self.values = {k: v.detach().cpu() for k, v in stored.items()}
        self.values["version"] = torch.tensor(VERSION)

    def scale(self, name: str, compute: Callable[[], Tensor], channels: int | None = None) -> Tensor:
        """Positive finite scales (float64): one, or one per channel."""
        value = self._get(name, lambda: torch.as_tensor(compute(), dtype=torch.float64)).to(torch.float64)
        want = () if channels is None else (channels,)
        if tuple(value.shape) != want or not bool((torch.isfinite(value) & (value > 0)).all()):
            raise IntegerParameterError(f"integer parameter {name} is not {'a' if not want else want[0]} "
                                        "positive finite scale" + ("s" if want else ""))
        return value

    def exponents(self, name: str, compute: Callable[[], Tensor], channels: int | None = None) -> Tensor:
        """Integer exponents of power-of-two scales (int64), within [-60, 60]."""
        value = self._get(name, compute)
        want = () if channels is None else (channels,)
        if tuple(value.shape) != want or value.is_floating_point() or int(value.abs().max()) > 60:
            raise IntegerParameterError(f"integer parameter {name} is not {'an' if not want else want[0]} "
                                        "exponent" + ("s" if want else "") + " within ±60")
        return value.to(torch.int64)

    def _get(self, name: str, compute: Callable[[], Tensor]) -> Tensor:
        if name not in self.values:
            if not self.calibrating:
                raise IntegerParameterError(f"integer parameters lack {name}")
            self.values[name] = compute().detach().cpu()
        return self.values[name]

    def digest(self) -> bytes:
        """sha256 over every entry (names, dtypes, shapes, values): what a ``.tcm`` header's tables id covers."""
        h = hashlib.sha256()
        for name in sorted(self.values):
            t = self.values[name].contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.numpy().tobytes())
        return h.digest()


# ------------------------------------------------------------------ calibration helpers
def amax(xs: Sequence[Tensor], per_channel: bool = True) -> Tensor:
    """The largest |value| over calibration tensors (NHWC): per channel (the last dimension) or overall."""
    if per_channel:
        return torch.stack([x.detach().abs().reshape(-1, x.shape[-1]).amax(0) for x in xs]).amax(0).double()
    return torch.stack([x.detach().abs().max() for x in xs]).max().double()


def scale_for(xs: Sequence[Tensor], limit: float, per_channel: bool = True) -> Tensor:
    """Scales that map the calibration data's largest |value| (per channel, or overall) to ``limit``."""
    m = amax(xs, per_channel)
    return torch.where(m > 0, m, torch.ones_like(m)) / limit


def nhwc(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1)


def nchw(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2)


def each(xs: Calibration, f: Callable[[Tensor], Tensor]) -> Calibration:
    """``f`` on every calibration tensor, without gradients; None stays None (building from stored parameters)."""
    if xs is None:
        return None
    with torch.no_grad():
        return [f(x) for x in xs]


def pixel_shuffle_nhwc(x: Tensor, r: int = 2) -> Tensor:
    """``nn.PixelShuffle`` on an NHWC map: channel c*r*r + i*r + j goes to (row*r + i, col*r + j, c)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, c // (r * r), r, r).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * r, w * r, c // (r * r))


def table_of(f: Callable[[Tensor], Tensor], in_scale: Tensor, out_scale: Tensor | float, lo: int, hi: int
             ) -> Tensor:
    """round(f(i * in_scale) / out_scale) for i in [-GRID, GRID], one row per channel of ``in_scale``, clamped
    to [lo, hi]: computed with ``layers.integer``'s basic-operation functions, the same on every machine."""
    i = torch.arange(-GRID, GRID + 1, dtype=torch.float64)
    scale = in_scale.to(torch.float64).reshape(-1, 1)
    out = torch.as_tensor(out_scale, dtype=torch.float64).reshape(-1, 1)
    return torch.round(f(i * scale) / out).clamp_(lo, hi)


def _float_weights(layer: nn.Module, fold: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor | None]:
    """The layer's weights and bias in float64; ``fold`` is a layer norm's (weight, bias) to fold in:
    W diag(gamma), b + W beta, the sum computed correctly rounded (math.fsum of exact products), so that
    every machine folds to the same bits."""
    weight = layer.weight.detach().double()
    bias = None if layer.bias is None else layer.bias.detach().double()
    if fold is not None:
        gamma, beta = fold[0].detach().double(), fold[1].detach().double()
        products = (weight.reshape(weight.shape[0], -1) * beta).tolist()  # float32 x float32: exact in float64
        extra = torch.tensor([math.fsum(row) for row in products], dtype=torch.float64)
        weight = weight * gamma.reshape(1, -1, *([1] * (weight.dim() - 2)))
        bias = extra if bias is None else torch.tensor([math.fsum(v) for v in zip(bias.tolist(), extra.tolist())],
                                                       dtype=torch.float64)
    return weight, bias


def _layer(weight: Tensor, q: Tensor, out: nn.Module, what: str, wide: int | None) -> IntLinear:
    if weight.dim() == 4 and weight.shape[-2:] == (3, 3):
        return IntConv3x3(q, out, what, wide)
    if weight.dim() == 4 and weight.shape[-2:] != (1, 1):
        raise IntegerParameterError(f"{what}: a {tuple(weight.shape[-2:])} convolution has no integer form here")
    return IntLinear(q, out, what, wide)


def _expand(scale: Tensor | float, n: int, repeat: int = 1) -> Tensor:
    scale = torch.as_tensor(scale, dtype=torch.float64)
    return (scale.repeat_interleave(repeat) if scale.dim() else scale).expand(n).clone()


def _acc_bias(bias: Tensor | None, w_scale: Tensor) -> Tensor:
    return torch.zeros_like(w_scale) if bias is None else torch.round(bias / w_scale)


def build_linear(layer: nn.Module, in_scale: Tensor | float, out_scale: Tensor | float, lo: float, hi: float,
                 what: str, dtype: torch.dtype = torch.float32, fold: tuple[Tensor, Tensor] | None = None,
                 repeat: int = 1, wide: int | None = None) -> IntLinear:
    """A layer whose outputs have any scales (per output channel; ``repeat`` each for a sub-pixel convolution's
    r*r outputs of one channel): free 8-bit weights, exact float64 requantisation (:class:`ExactOut`)."""
    weight, bias = _float_weights(layer, fold)
    n, k = weight.shape[:2]
    q, w_scale = quantize_weights(weight, _expand(in_scale, k))
    out = ExactOut(_acc_bias(bias, w_scale), fixed_multipliers(w_scale / _expand(out_scale, n, repeat)), lo, hi, dtype)
    return _layer(weight, q, out, what, wide)


def shift_linear(layer: nn.Module, in_scale: Tensor | float, out_scale: Tensor | float, lo: int, hi: int,
                 what: str, dtype: torch.dtype, fold: tuple[Tensor, Tensor] | None = None,
                 wide: int | None = None) -> IntLinear:
    """A layer whose outputs have given scales, reached by a shift: each channel's weight scale is the output
    scale times a power of two (:func:`layers.integer.quantize_weights`), requantisation a :class:`ShiftOut`
    (an exact float64 one where the weights need a left shift)."""
    weight, bias = _float_weights(layer, fold)
    n, k = weight.shape[:2]
    target = _expand(out_scale, n)
    q, w_scale = quantize_weights(weight, _expand(in_scale, k), target)
    shift = (torch.frexp(target / w_scale).exponent - 1).double()  # exact: the ratio is a power of two
    if int(shift.min()) < 0:
        out: nn.Module = ExactOut(_acc_bias(bias, w_scale), w_scale / target, lo, hi, dtype)
    else:
        out = ShiftOut(_acc_bias(bias, w_scale), shift, lo, hi, dtype)
    return _layer(weight, q, out, what, wide)


def free_shift_linear(layer: nn.Module, in_scale: Tensor | float, params: Parameters, name: str,
                      out_max: Callable[[], Tensor], lo: int, hi: int, dtype: torch.dtype,
                      wide: int | None = None) -> tuple[IntLinear, Tensor]:
    """A layer with free 8-bit weights whose outputs are requantised by a shift per channel: (layer, output
    scales); each output scale is its weight scale times 2**shift, the shift (stored) the smallest that keeps
    the calibration data's largest |output| (``out_max()``) within ``hi``."""
    weight, bias = _float_weights(layer, None)
    n, k = weight.shape[:2]
    q, w_scale = quantize_weights(weight, _expand(in_scale, k))
    shift = params.exponents(f"{name}.shift", lambda: torch.ceil(torch.log2(
        (out_max() / (hi * w_scale)).clamp(min=1.0))).to(torch.int64).clamp_(0, 30), n)
    out = ShiftOut(_acc_bias(bias, w_scale), shift, lo, hi, dtype)
    return _layer(weight, q, out, name, wide), w_scale * exp2(shift)


def table_linear(layer: nn.Module, in_scale: Tensor | float, params: Parameters, name: str,
                 acc_max: Callable[[], Tensor], f: Callable[[Tensor], Tensor], out_scale: Tensor | float,
                 lo: int, hi: int, dtype: torch.dtype, wide: int | None = None) -> IntLinear:
    """A layer with free 8-bit weights followed by ``f`` through a table per channel (:class:`TableOut`): the
    accumulator shifted right (per channel, stored) so that the calibration data's largest |pre-activation|
    (``acc_max()``, real units) spans the table's grid, and each entry the rounded value of ``f`` at the middle
    of its interval, on the output scale."""
    weight, bias = _float_weights(layer, None)
    n, k = weight.shape[:2]
    q, w_scale = quantize_weights(weight, _expand(in_scale, k))
    shift = params.exponents(f"{name}.shift", lambda: torch.ceil(torch.log2(
        (acc_max() / (GRID * w_scale)).clamp(min=1.0))).to(torch.int64).clamp_(0, 30), n)
    i = torch.arange(-GRID, GRID + 1, dtype=torch.float64)
    step = exp2(shift) * w_scale
    middle = torch.where(shift > 0, 0.5, 0.0).double()[:, None]
    values = torch.round(f((i[None] + middle) * step[:, None]) / _expand(out_scale, n)[:, None]).clamp_(lo, hi)
    return _layer(weight, q, TableOut(_acc_bias(bias, w_scale), shift, values, GRID, dtype), name, wide)


def stream_to_int8(x: Tensor, multiplier: Tensor) -> Tensor:
    """A float32 stream's integers as int8 at per-channel scales (exact requantisation)."""
    return requantize(x, multiplier, -ACT_MAX, ACT_MAX, dtype=torch.int8)


def realign(x: Tensor, multiplier: float) -> Tensor:
    """A float32 stream's integers on another stream's grid (exact requantisation)."""
    return requantize(x, multiplier, -STREAM_MAX, STREAM_MAX)


def multipliers(num: Tensor | float, den: Tensor | float) -> Tensor:
    """Exact requantisation multipliers ``num / den`` (:func:`layers.integer.fixed_multipliers`)."""
    return fixed_multipliers(torch.as_tensor(num, dtype=torch.float64) / torch.as_tensor(den, dtype=torch.float64))


class Entry(nn.Module):
    """Where an exact float map (NCHW) enters a network: int8 per channel at power-of-two scales, 12 bits for the
    channels from ``wide_from`` on (the decoded latents, whose fractions matter), for its first layer
    (``split_wide``)."""

    def __init__(self, params: Parameters, name: str, x: Calibration, channels: int, wide_from: int):
        super().__init__()
        limit = torch.full((channels,), float(ACT_MAX), dtype=torch.float64)
        limit[wide_from:] = WIDE_MAX
        self.wide_from = wide_from
        self.register_buffer("exponents", params.exponents(f"{name}.in_exp", lambda: torch.stack([
            pow2_exponents(m, int(lim)) for m, lim in zip(amax(each(x, nhwc)), limit)]), channels), persistent=False)

    @property
    def scale(self) -> Tensor:
        return exp2(-self.exponents)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return split_wide(nhwc(x), self.exponents, self.wide_from)


def stream_exponent(params: Parameters, name: str, values: Callable[[], Sequence[Tensor]]) -> int:
    """The power-of-two scale 2**-e of a 16-bit stream that holds the calibration data's values."""
    return int(params.exponents(f"{name}.exp", lambda: pow2_exponents(amax(values(), per_channel=False),
                                                                       STREAM_MAX)))


def to_int8_shifts(params: Parameters, name: str, x: Calibration, stream_scale: float, channels: int) -> Tensor:
    """Per-channel shifts that take a stream (scale ``stream_scale``) to int8 holding the calibration data's
    largest |value| of each channel (stored)."""
    return params.exponents(f"{name}.shift", lambda: torch.ceil(torch.log2(
        (amax(each(x, nhwc)) / (ACT_MAX * stream_scale)).clamp(min=1.0))).to(torch.int64).clamp_(0, 30), channels)


def shift_stream(x: Tensor, shift: int) -> Tensor:
    """A stream's integers on a grid 2**shift times coarser (shift > 0) or finer (shift < 0); exact, clamped."""
    if shift > 0:
        x = torch.bitwise_right_shift(x + (1 << (shift - 1)), shift)
    elif shift < 0:
        x = torch.bitwise_left_shift(x.clamp(-(STREAM_MAX >> -shift), STREAM_MAX >> -shift), -shift)
    return x.clamp_(-STREAM_MAX, STREAM_MAX)


# ------------------------------------------------------------------ networks
class IntConvStack(nn.Module):
    """conv3x3 -> GELU -> conv3x3 -> GELU -> conv3x3 (mean and scale transforms), and LRP's 0.5 * tanh after it.

    In: an exact float map (NCHW); out: multiples of 2**-OUT_BITS.  Each GELU is a table on the shifted
    accumulator of the convolution before it.
    """

    def __init__(self, stack: nn.Sequential, params: Parameters, name: str, x: Calibration, lrp: bool,
                 wide: int | None):
        super().__init__()
        conv1, _, conv2, _, conv3 = stack
        c_in, c1, c2 = conv1.in_channels, conv1.out_channels, conv2.out_channels
        wide = c_in if wide is None else wide  # the channels from ``wide`` on take 12-bit inputs
        self.entry = Entry(params, name, x, c_in, wide)
        h = each(x, conv1)
        a1 = params.scale(f"{name}.1.scale", lambda: scale_for(each(each(h, F.gelu), nhwc), ACT_MAX), c1)
        self.conv1 = table_linear(conv1, self.entry.scale, params, f"{name}.0", lambda: amax(each(h, nhwc)), gelu_,
                                  a1, -ACT_MAX, ACT_MAX, torch.int8, wide)
        h = each(each(h, F.gelu), conv2)
        a2 = params.scale(f"{name}.3.scale", lambda: scale_for(each(each(h, F.gelu), nhwc), ACT_MAX), c2)
        self.conv2 = table_linear(conv2, a1, params, f"{name}.2", lambda: amax(each(h, nhwc)), gelu_, a2,
                                  -ACT_MAX, ACT_MAX, torch.int8)
        out = each(each(h, F.gelu), conv3)
        if lrp:
            half = 2**OUT_BITS // 2
            self.conv3 = table_linear(conv3, a2, params, f"{name}.4", lambda: amax(each(out, nhwc)), half_tanh_,
                                      2.0**-OUT_BITS, -half, half, torch.float32)
        else:
            self.conv3 = build_linear(conv3, a2, 2.0**-OUT_BITS, -OUT_MAX, OUT_MAX, f"{name}.4")

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(self.conv1(*self.entry(x)))
        return nchw(self.conv3(h).mul_(2.0**-OUT_BITS))


def _reference_attention(msa, x: Tensor) -> Tensor:
    """The float window attention's output before its projection (NHWC), for calibration."""
    b, h, w, c = x.shape
    p = msa.window
    if msa.shifted:
        x = torch.roll(x, shifts=(-(p // 2), -(p // 2)), dims=(1, 2))
    windows = x.reshape(b, h // p, p, w // p, p, c).transpose(2, 3).reshape(-1, p * p, c)
    qkv = msa.embedding_layer(windows).view(windows.shape[0], p * p, 3, msa.heads, msa.head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    logits = q @ k.transpose(-2, -1) * msa.scale + msa.relative_bias()[None]
    if msa.shifted:
        mask = torch.zeros(h // p, w // p, p * p, p * p)
        row, col, corner = shift_masks(p, x.device)
        mask[-1, :-1], mask[:-1, -1], mask[-1, -1] = row, col, corner
        logits = logits.view(b, h // p, w // p, msa.heads, p * p, p * p) + mask[None, :, :, None]
        logits = logits.view(-1, msa.heads, p * p, p * p)
    o = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, h // p, w // p, p, p, c).transpose(2, 3)
    o = o.reshape(b, h, w, c)
    if msa.shifted:
        o = torch.roll(o, shifts=(p // 2, p // 2), dims=(1, 2))
    return o


class IntSwinBlock(nn.Module):
    """A Swin block (window attention and MLP, pre-norm) on an int32 16-bit stream at scale 2**-exponent, NHWC."""

    def __init__(self, block: SwinBlock, params: Parameters, name: str, x: Calibration, exponent: int):
        super().__init__()
        msa = block.msa
        self.window, self.shifted, self.heads, self.head_dim = msa.window, msa.shifted, msa.heads, msa.head_dim
        c = msa.dim
        s = 2.0**-exponent
        self.eps1, self.eps2 = self._eps(block.ln1, s, c), self._eps(block.ln2, s, c)
        norm = lambda t: F.layer_norm(t, (c,))  # noqa: E731  (no affine: folded into the next layer)
        self.z_exp1 = min(int(params.exponents(f"{name}.ln1.exp", lambda: pow2_exponents(
            amax(each(x, norm), per_channel=False), ACT_MAX))), 20)  # normalised values: |z| <= sqrt(C)
        qkv = each(x, lambda t: msa.embedding_layer(block.ln1(t)))
        parts = [params.scale(f"{name}.msa.{part}.scale", lambda i=i: scale_for(
            each(qkv, lambda t: t[..., i * c:(i + 1) * c]), ACT_MAX, per_channel=False)) for i, part in enumerate("qkv")]
        sq, sk, sv = (float(v) for v in parts)
        self.qkv = shift_linear(msa.embedding_layer, 2.0**-self.z_exp1, torch.cat([torch.full((c,), v) for v in (sq, sk, sv)]),
                                -ACT_MAX, ACT_MAX, f"{name}.msa.qkv", torch.float32,
                                fold=(block.ln1.weight, block.ln1.bias))
        logit_scale = sq * sk * msa.scale
        length = math.ceil((EXP_BITS + 1) * math.log(2) / logit_scale) + 2
        self.exp_shift = max(0, math.ceil(math.log2(length / EXP_ENTRIES)))  # coarser d for fine logit grids
        d = (torch.arange(min(length, EXP_ENTRIES) + 1, dtype=torch.float64) + 0.5 * (self.exp_shift > 0)) \
            * 2.0**self.exp_shift
        self.register_buffer("exp", torch.round(2.0**EXP_BITS * exp_(-d * logit_scale)).float(), persistent=False)
        bias = torch.round(msa.relative_bias().detach().double() / logit_scale).clamp_(-(2**21), 2**21).float()
        masks = [torch.zeros(msa.window**2, msa.window**2),
                 *(torch.where(torch.isinf(m), float(MASKED), 0.0) for m in shift_masks(msa.window, bias.device))]
        self.register_buffer("bias_masks", torch.stack([bias + m for m in masks]), persistent=False)
        attn = each(x, lambda t: _reference_attention(msa, block.ln1(t)))
        so = params.scale(f"{name}.msa.out.scale", lambda: scale_for(attn, ACT_MAX), c)
        self.out_ratio = RatioRequantizer(multipliers(sv, so).view(self.heads, 1, self.head_dim))
        self.proj = shift_linear(msa.linear, so, s, -STREAM_MAX, STREAM_MAX, f"{name}.msa.linear", torch.int32)
        x1 = each(x, lambda t: t + msa.linear(_reference_attention(msa, block.ln1(t))))
        self.z_exp2 = min(int(params.exponents(f"{name}.ln2.exp", lambda: pow2_exponents(
            amax(each(x1, norm), per_channel=False), ACT_MAX))), 20)
        fc1, _, fc2 = block.mlp
        hidden = each(x1, lambda t: fc1(block.ln2(t)))
        a_h = params.scale(f"{name}.mlp.1.scale", lambda: scale_for(each(hidden, F.gelu), ACT_MAX), fc1.out_features)
        self.fc1 = self._gelu_linear(fc1, block.ln2, 2.0**-self.z_exp2, params, f"{name}.mlp.0", hidden, a_h)
        self.fc2 = shift_linear(fc2, a_h, s, -STREAM_MAX, STREAM_MAX, f"{name}.mlp.2", torch.int32)

    @staticmethod
    def _gelu_linear(fc1, norm, in_scale, params, name, hidden, a_h) -> IntLinear:
        """fc1 with the norm's affine weights folded in, then GELU by table (:func:`table_linear`, folded)."""
        weight, bias = _float_weights(fc1, (norm.weight, norm.bias))
        n, k = weight.shape
        q, w_scale = quantize_weights(weight, _expand(in_scale, k))
        shift = params.exponents(f"{name}.shift", lambda: torch.ceil(torch.log2(
            (amax(hidden) / (GRID * w_scale)).clamp(min=1.0))).to(torch.int64).clamp_(0, 30), n)
        i = torch.arange(-GRID, GRID + 1, dtype=torch.float64)
        middle = torch.where(shift > 0, 0.5, 0.0).double()[:, None]
        values = torch.round(gelu_((i[None] + middle) * (exp2(shift) * w_scale)[:, None]) / a_h[:, None])
        out = TableOut(_acc_bias(bias, w_scale), shift, values.clamp_(-ACT_MAX, ACT_MAX), GRID, torch.int8)
        return IntLinear(q[0], out, name)

    @staticmethod
    def _eps(norm: nn.LayerNorm, scale: float, channels: int) -> int:
        """The norm's epsilon on the stream's integer grid: an integer, small enough that C*C*eps stays exact."""
        return int(min(round(norm.eps / (scale * scale)), 2**30 // channels))

    def _attend(self, t: Tensor, spans: list[tuple[int, int, int]]) -> Tensor:
        """Window attention of tokens ``t`` (B, T, C) in window order: int8 (B, T, C), the projection's input."""
        b, n, c = t.shape
        L, heads, hd = self.window**2, self.heads, self.head_dim
        qkv = self.qkv(layer_norm_int8(t, self.z_exp1, self.eps1))
        out = torch.empty(b, n, c, dtype=torch.int8, device=t.device)
        last = self.exp.numel() - 1
        for start, end, mask in spans:
            q, k, v = qkv[:, start:end].reshape(-1, L, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
            logits = torch.matmul(q, k.transpose(-2, -1))  # exact: |sum| <= hd * 127**2 < 2**24
            logits += self.bias_masks[mask]  # exact: below 2**23 in magnitude
            d = torch.sub(logits.amax(-1, keepdim=True), logits, out=logits).to(torch.int32)  # exact, >= 0
            if self.exp_shift:
                d = torch.bitwise_right_shift(d, self.exp_shift, out=d)
            e = self.exp.index_select(0, d.clamp_(max=last).reshape(-1)).view(d.shape)
            ev = torch.matmul(e, v)  # exact: |sum| <= L * 2**10 * 127 < 2**24
            o = self.out_ratio(ev, e.sum(-1, keepdim=True), -ACT_MAX, ACT_MAX, torch.int8)
            out[:, start:end] = o.transpose(1, 2).reshape(b, end - start, c)
        return out

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        order, spans = tokens_in_window_order(self.window, self.shifted, h, w, x.device)
        masks = [m for _, _, m in window_blocks(h // self.window, w // self.window, self.shifted)]
        spans = [(s, e, 0 if m is None else m + 1) for (s, e), m in zip(spans, masks)]
        t = x.reshape(b, h * w, c).index_select(1, order)
        t = t.add_(self.proj(self._attend(t, spans))).clamp_(-STREAM_MAX, STREAM_MAX)
        hidden = self.fc1(layer_norm_int8(t, self.z_exp2, self.eps2))
        t = t.add_(self.fc2(hidden)).clamp_(-STREAM_MAX, STREAM_MAX)
        return torch.empty_like(t).index_copy_(1, order, t).view(b, h, w, c)  # back to the pixels, as SwinBlock


class IntResidualUnit(nn.Module):
    """CompressAI's attention-block unit, relu(conv1x1 -> relu -> conv3x3 -> relu -> conv1x1 (x) + x), on an
    int32 stream at scale 2**-exponent; the ReLU layers requantise by shifts."""

    def __init__(self, unit: nn.Module, params: Parameters, name: str, x: Calibration, exponent: int):
        super().__init__()
        c1, _, c2, _, c3 = unit.conv
        s = 2.0**-exponent
        shift = to_int8_shifts(params, f"{name}.in", x, s, c1.in_channels)
        self.register_buffer("in_shift", shift.to(torch.int32), persistent=False)
        h = each(x, lambda t: F.relu(c1(t)))
        self.conv1, a1 = free_shift_linear(c1, s * exp2(shift), params, f"{name}.conv.0",
                                           lambda: amax(each(h, nhwc)), 0, ACT_MAX, torch.int8)
        h2 = each(h, lambda t: F.relu(c2(t)))
        self.conv2, a2 = free_shift_linear(c2, a1, params, f"{name}.conv.2", lambda: amax(each(h2, nhwc)), 0, ACT_MAX,
                                           torch.int8)
        self.conv3 = shift_linear(c3, a2, s, -STREAM_MAX, STREAM_MAX, f"{name}.conv.4", torch.int32)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv3(self.conv2(self.conv1(shift_right(x, self.in_shift, -ACT_MAX, ACT_MAX))))
        return h.add_(x).clamp_(0, STREAM_MAX)


def _units(units: Sequence[nn.Module], x: Calibration) -> list[Calibration]:
    """The calibration inputs of each unit in turn, and the last unit's output."""
    seen = [x]
    for unit in units:
        seen.append(each(seen[-1], unit))
    return seen


class IntSWAtten(nn.Module):
    """SWAtten: in_conv, the Swin pair, conv_a * sigmoid(conv_b) + x, out_conv; exact float maps in and out,
    int32 16-bit streams at power-of-two scales inside."""

    def __init__(self, atten: SWAtten, params: Parameters, name: str, x: Calibration):
        super().__init__()
        c_in, c = atten.in_conv.in_channels, atten.in_conv.out_channels
        self.entry = Entry(params, name, x, c_in, 0)
        pair = atten.non_local_block
        t = each(x, lambda v: nhwc(atten.in_conv(v)))
        t1 = each(t, pair.block_1)
        t2 = each(t1, pair.block_2)
        half = lambda blk: lambda v: v + blk.msa(blk.ln1(v))  # noqa: E731  (a block's stream after attention)
        e = stream_exponent(params, f"{name}.stream", lambda: [
            *t, *each(t, half(pair.block_1)), *t1, *each(t1, half(pair.block_2)), *t2])
        s = 2.0**-e
        self.in_conv = shift_linear(atten.in_conv, self.entry.scale, s, -STREAM_MAX, STREAM_MAX, f"{name}.in_conv",
                                    torch.int32, wide=self.entry.wide_from)
        self.block_1 = IntSwinBlock(pair.block_1, params, f"{name}.non_local_block.block_1", t, e)
        self.block_2 = IntSwinBlock(pair.block_2, params, f"{name}.non_local_block.block_2", t1, e)
        a_seen = _units(atten.conv_a, each(t, nchw))
        ea = stream_exponent(params, f"{name}.conv_a", lambda: [nhwc(v) for vs in a_seen for v in vs])
        self.a_shift = e - ea
        self.conv_a = nn.ModuleList(IntResidualUnit(u, params, f"{name}.conv_a.{i}", a_seen[i], ea)
                                    for i, u in enumerate(atten.conv_a))
        b_seen = _units(atten.conv_b[:-1], each(t2, nchw))
        eb = stream_exponent(params, f"{name}.conv_b", lambda: [nhwc(v) for vs in b_seen for v in vs])
        self.b_shift = e - eb
        self.conv_b = nn.ModuleList(IntResidualUnit(u, params, f"{name}.conv_b.{i}", b_seen[i], eb)
                                    for i, u in enumerate(atten.conv_b[:-1]))
        last = atten.conv_b[-1]
        shift = to_int8_shifts(params, f"{name}.conv_b.3.in", b_seen[-1], 2.0**-eb, c)
        self.register_buffer("b_to_int8", shift.to(torch.int32), persistent=False)
        gate_in = each(b_seen[-1], last)
        self.gate_conv = table_linear(last, 2.0**-eb * exp2(shift), params, f"{name}.conv_b.3",
                                      lambda: amax(each(gate_in, nhwc)), sigmoid_, 2.0**-8, 0, 256, torch.int32)
        mixed = each(x, lambda v: atten.conv_a(atten.in_conv(v)) * torch.sigmoid(
            atten.conv_b(atten.non_local_block(atten.in_conv(v)))) + atten.in_conv(v))
        eo = stream_exponent(params, f"{name}.out", lambda: each(mixed, nhwc))
        self.gated_shift = ea + 8 - eo  # a * gate is on the grid 2**-(ea + 8)
        self.residual_shift = e - eo
        shift = to_int8_shifts(params, f"{name}.out_conv.in", mixed, 2.0**-eo, c)
        self.register_buffer("out_to_int8", shift.to(torch.int32), persistent=False)
        out = each(mixed, atten.out_conv)
        out_exp = params.exponents(f"{name}.out_exp", lambda: pow2_exponents(amax(each(out, nhwc)), STREAM_MAX), c_in)
        self.register_buffer("out_exp", out_exp, persistent=False)
        self.out_conv = shift_linear(atten.out_conv, 2.0**-eo * exp2(shift), exp2(-out_exp), -STREAM_MAX, STREAM_MAX,
                                     f"{name}.out_conv", torch.float32)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_conv(*self.entry(x))
        z = self.block_2(self.block_1(x))
        a = shift_stream(x.clone(), self.a_shift)
        for unit in self.conv_a:
            a = unit(a)
        b = shift_stream(z, self.b_shift)
        for unit in self.conv_b:
            b = unit(b)
        gate = self.gate_conv(shift_right(b, self.b_to_int8, -ACT_MAX, ACT_MAX))
        mixed = shift_stream(a.mul_(gate), self.gated_shift).add_(shift_stream(x, self.residual_shift))
        out = self.out_conv(shift_right(mixed, self.out_to_int8, -ACT_MAX, ACT_MAX))
        return nchw(out.mul_(exp2(-self.out_exp).float()))


class IntIGDN(nn.Module):
    """Inverse GDN, y = x * sqrt(beta + gamma @ x**2), from int8 x (per-channel scales) to a 16-bit stream, exactly.

    x**2 <= 2**14 and the integer gammas are below 2**20, so the norm's sums
    (float64) stay below 2**42; the norm is clamped to 2**34 (calibration puts
    its largest value at 2**30), its square root is the exact integer square
    root of norm * 2**12 (below 2**23), and x * root < 2**30 before an exact
    requantisation.
    """

    ROOT_BITS = 6

    def __init__(self, gdn: GDN, params: Parameters, name: str, x: Calibration, in_scale: Tensor, out_scale: float):
        super().__init__()
        beta = gdn.beta_reparam(gdn.beta).detach().double()
        gamma = gdn.gamma_reparam(gdn.gamma).detach().double()
        norm = each(x, lambda t: nhwc(F.conv2d(t**2, gamma.float().reshape(*gamma.shape, 1, 1), beta.float())))
        sn = float(params.scale(f"{name}.norm.scale", lambda: scale_for(norm, 2**30, False)))
        g = torch.round(gamma * (in_scale.double() ** 2)[None, :] / sn)
        b = torch.round(beta / sn)
        if float(g.abs().max()) >= 2**20 or float(b.abs().max()) >= 2**30:
            raise IntegerBoundError(f"{name}: GDN weights beyond the exact range of its sums")
        self.register_buffer("gamma", g.t().contiguous(), persistent=False)  # (in, out): x**2 @ gamma
        self.register_buffer("beta", b, persistent=False)
        self.register_buffer("multiplier", multipliers(in_scale.double() * math.sqrt(sn),
                                                       out_scale * 2**self.ROOT_BITS), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        xd = x.to(torch.float64)
        norm = (xd * xd) @ self.gamma + self.beta  # exact integers below 2**42
        root = isqrt(norm.clamp_(0, 2**34) * 2.0 ** (2 * self.ROOT_BITS))
        return requantize(xd * root, self.multiplier, -STREAM_MAX, STREAM_MAX)


class IntResidualBlockUpsample(nn.Module):
    """CompressAI's ResidualBlockUpsample: subpel conv, LeakyReLU, conv, inverse GDN, plus a subpel branch."""

    def __init__(self, block: ResidualBlockUpsample, params: Parameters, name: str, x: Calibration):
        super().__init__()
        sub_conv, conv = block.subpel_conv[0], block.conv
        c_in, c = sub_conv.in_channels, conv.out_channels
        self.entry = Entry(params, name, x, c_in, 0)
        in_scale, wide = self.entry.scale, self.entry.wide_from
        sub = each(x, block.subpel_conv)
        s1 = params.scale(f"{name}.subpel_conv.scale", lambda: scale_for(each(sub, nhwc), GRID), c)
        self.subpel = build_linear(sub_conv, in_scale, s1, -GRID, GRID, f"{name}.subpel_conv", repeat=4, wide=wide)
        h = each(sub, lambda t: F.leaky_relu(t, 0.01))
        a1 = params.scale(f"{name}.leaky.scale", lambda: scale_for(each(h, nhwc), ACT_MAX), c)
        self.leaky = Table(table_of(leaky_relu_, s1, a1, -ACT_MAX, ACT_MAX), -GRID, torch.int8)
        h = each(h, conv)
        a2 = params.scale(f"{name}.conv.scale", lambda: scale_for(each(h, nhwc), ACT_MAX), c)
        self.conv = build_linear(conv, a1, a2, -ACT_MAX, ACT_MAX, f"{name}.conv", torch.int8)
        so = params.scale(f"{name}.out.scale", lambda: scale_for(
            [*each(x, lambda t: nhwc(block(t))), *each(x, lambda t: nhwc(block.upsample(t)))], STREAM_MAX, False))
        self.out_scale = float(so)
        self.igdn = IntIGDN(block.igdn, params, f"{name}.igdn", h, a2, self.out_scale)
        self.upsample = build_linear(block.upsample[0], in_scale, so, -STREAM_MAX, STREAM_MAX, f"{name}.upsample",
                                     wide=wide)

    def forward(self, x: Tensor) -> Tensor:
        q = self.entry(x)
        h = self.conv(self.leaky(pixel_shuffle_nhwc(self.subpel(*q))))
        out = self.igdn(h) + pixel_shuffle_nhwc(self.upsample(*q))
        return out.clamp_(-STREAM_MAX, STREAM_MAX)


class IntConvTransBlock(nn.Module):
    """TCM's block on a 16-bit stream: 1x1 conv, a residual-CNN half and a Swin half, 1x1 conv, plus x."""

    def __init__(self, block: ConvTransBlock, params: Parameters, name: str, x: Calibration, in_scale: float):
        super().__init__()
        cd, td = block.conv_dim, block.trans_dim
        self.conv_dim = cd
        s8 = params.scale(f"{name}.in.scale", lambda: scale_for(each(x, nhwc), ACT_MAX), cd + td)
        self.register_buffer("to_int8", multipliers(in_scale, s8), persistent=False)
        both = each(x, block.conv1_1)
        conv_x = each(both, lambda t: t[:, :cd])
        trans_x = each(both, lambda t: nhwc(t[:, cd:]))
        rb = block.conv_block
        conv_out = each(conv_x, lambda t: rb(t) + t)
        sc = float(params.scale(f"{name}.conv.scale", lambda: scale_for(
            [*each(conv_x, nhwc), *each(conv_out, nhwc)], STREAM_MAX, False)))
        tb = block.trans_block
        t_out = each(trans_x, tb)
        et = stream_exponent(params, f"{name}.trans", lambda: [
            *trans_x, *each(trans_x, lambda t: t + tb.msa(tb.ln1(t))), *t_out])
        st = 2.0**-et
        self.conv1_1 = build_linear(block.conv1_1, s8, torch.cat([torch.full((cd,), sc), torch.full((td,), st)]),
                                    -STREAM_MAX, STREAM_MAX, f"{name}.conv1_1")
        c8 = params.scale(f"{name}.conv_block.in.scale", lambda: scale_for(each(conv_x, nhwc), ACT_MAX), cd)
        self.register_buffer("c_to_int8", multipliers(sc, c8), persistent=False)
        h = each(conv_x, rb.conv1)
        l1 = params.scale(f"{name}.conv_block.conv1.scale", lambda: scale_for(each(h, nhwc), GRID), cd)
        self.rb_conv1 = build_linear(rb.conv1, c8, l1, -GRID, GRID, f"{name}.conv_block.conv1")
        h = each(h, lambda t: F.leaky_relu(t, 0.01))
        a1 = params.scale(f"{name}.conv_block.leaky1.scale", lambda: scale_for(each(h, nhwc), ACT_MAX), cd)
        self.leaky1 = Table(table_of(leaky_relu_, l1, a1, -ACT_MAX, ACT_MAX), -GRID, torch.int8)
        h = each(h, rb.conv2)
        l2 = params.scale(f"{name}.conv_block.conv2.scale", lambda: scale_for(each(h, nhwc), GRID), cd)
        self.rb_conv2 = build_linear(rb.conv2, a1, l2, -GRID, GRID, f"{name}.conv_block.conv2")
        self.leaky2 = Table(table_of(leaky_relu_, l2, sc, -STREAM_MAX, STREAM_MAX), -GRID)
        self.trans = IntSwinBlock(tb, params, f"{name}.trans_block", trans_x, et)
        cat = [torch.cat([nhwc(a), b], -1) for a, b in zip(conv_out, t_out)] if x is not None else None
        m8 = params.scale(f"{name}.conv1_2.in.scale", lambda: scale_for(cat, ACT_MAX), cd + td)
        stream = torch.cat([torch.full((cd,), sc, dtype=torch.float64), torch.full((td,), st, dtype=torch.float64)])
        self.register_buffer("mid_to_int8", multipliers(stream, m8), persistent=False)
        out = each(x, block)
        so = float(params.scale(f"{name}.out.scale", lambda: scale_for(each(out, nhwc), STREAM_MAX, False)))
        self.conv1_2 = build_linear(block.conv1_2, m8, so, -STREAM_MAX, STREAM_MAX, f"{name}.conv1_2")
        self.residual = fixed_multiplier(in_scale / so)
        self.out_scale = so

    def forward(self, x: Tensor) -> Tensor:
        both = self.conv1_1(stream_to_int8(x, self.to_int8))
        c, t = both[..., : self.conv_dim], both[..., self.conv_dim:]
        h = self.leaky1(self.rb_conv1(stream_to_int8(c, self.c_to_int8)))
        c = (self.leaky2(self.rb_conv2(h)) + 2 * c).clamp_(-STREAM_MAX, STREAM_MAX)
        t = self.trans(t.to(torch.int32)).float()
        mid = stream_to_int8(torch.cat([c, t], -1), self.mid_to_int8)
        return (self.conv1_2(mid) + realign(x, self.residual)).clamp_(-STREAM_MAX, STREAM_MAX)


class IntHyperSynthesis(nn.Module):
    """h_mean_s or h_scale_s: ResidualBlockUpsample, TCM blocks, subpel conv; exact float maps in and out."""

    def __init__(self, net: nn.Sequential, params: Parameters, name: str, x: Calibration):
        super().__init__()
        first, *blocks, last = net
        self.first = IntResidualBlockUpsample(first, params, f"{name}.0", x)
        h = each(x, first)
        scale = self.first.out_scale
        self.blocks = nn.ModuleList()
        for i, block in enumerate(blocks, start=1):
            self.blocks.append(IntConvTransBlock(block, params, f"{name}.{i}", h, scale))
            scale = self.blocks[-1].out_scale
            h = each(h, block)
        conv = last[0]
        s8 = params.scale(f"{name}.{len(net) - 1}.in.scale", lambda: scale_for(each(h, nhwc), ACT_MAX),
                          conv.in_channels)
        self.register_buffer("to_int8", multipliers(scale, s8), persistent=False)
        out = each(h, last)
        out_exp = params.exponents(f"{name}.out_exp", lambda: pow2_exponents(amax(each(out, nhwc)), STREAM_MAX),
                                   conv.out_channels // 4)
        self.register_buffer("out_exp", out_exp, persistent=False)
        self.last = build_linear(conv, s8, exp2(-out_exp), -STREAM_MAX, STREAM_MAX, f"{name}.{len(net) - 1}",
                                 repeat=4)

    def forward(self, x: Tensor) -> Tensor:
        h = self.first(x)
        for block in self.blocks:
            h = block(h)
        out = pixel_shuffle_nhwc(self.last(stream_to_int8(h, self.to_int8)))
        return nchw(out.mul_(exp2(-self.out_exp).float()))


class IntegerEntropyModel(ChannelEntropyModel):
    """The entropy model in exact integer arithmetic (see the module's text): built from a float one and its
    integer parameters, computing in float32 containers of exact values at its borders."""

    #: The networks a calibration run records the inputs of, by name.
    NETWORKS = ("h_mean_s", "h_scale_s", "atten_mean", "atten_scale", "cc_mean_transforms", "cc_scale_transforms",
                "lrp_transforms")

    def __init__(self, source: ChannelEntropyModel, parameters: Parameters,
                 inputs: dict[str, list[Tensor]] | None = None):
        nn.Module.__init__(self)
        self.num_slices, self.max_support_slices = source.num_slices, source.max_support_slices
        self.slice_channels = source.slice_channels
        get = (lambda name: inputs.get(name)) if inputs is not None else (lambda name: None)
        with torch.inference_mode(False), torch.no_grad():
            self.h_mean_s = IntHyperSynthesis(source.h_mean_s, parameters, "h_mean_s", get("h_mean_s"))
            self.h_scale_s = IntHyperSynthesis(source.h_scale_s, parameters, "h_scale_s", get("h_scale_s"))
            n = source.num_slices
            self.atten_mean = nn.ModuleList(nn.Sequential(IntSWAtten(
                source.atten_mean[i][0], parameters, f"atten_mean.{i}.0", get(f"atten_mean.{i}"))) for i in range(n))
            self.atten_scale = nn.ModuleList(nn.Sequential(IntSWAtten(
                source.atten_scale[i][0], parameters, f"atten_scale.{i}.0", get(f"atten_scale.{i}")))
                for i in range(n))
            none = None
            self.cc_mean_transforms = nn.ModuleList(IntConvStack(
                source.cc_mean_transforms[i], parameters, f"cc_mean_transforms.{i}", get(f"cc_mean_transforms.{i}"),
                False, none) for i in range(n))
            self.cc_scale_transforms = nn.ModuleList(IntConvStack(
                source.cc_scale_transforms[i], parameters, f"cc_scale_transforms.{i}",
                get(f"cc_scale_transforms.{i}"), False, none) for i in range(n))
            # LRP's input ends with the slice's decoded latents: 12-bit inputs
            self.lrp_transforms = nn.ModuleList(IntConvStack(
                source.lrp_transforms[i], parameters, f"lrp_transforms.{i}", get(f"lrp_transforms.{i}"), True,
                source.lrp_transforms[i][0].in_channels - source.slice_channels) for i in range(n))
            self.gaussian_conditional = copy.deepcopy(source.gaussian_conditional)
        self.integer_parameters = parameters
        self.arithmetic = "int8"
        self.kernels = source.kernels
        self.eval()

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def lrp_residual(self, lrp: Tensor) -> Tensor:
        return lrp  # the integer LRP transform ends with its 0.5 * tanh table

    @classmethod
    def calibrated(cls, source: ChannelEntropyModel, latents: Sequence[tuple[Tensor, Tensor]]
                   ) -> "IntegerEntropyModel":
        """Calibrate on ``latents`` ((y, z_hat) pairs, float32) and build: the float model runs on them, and
        every scale and table is set from what its networks see."""
        inputs: dict[str, list[Tensor]] = {}
        hooks = []
        for name in cls.NETWORKS:
            module = getattr(source, name)
            parts = [(name, module)] if not isinstance(module, nn.ModuleList) else \
                [(f"{name}.{i}", m) for i, m in enumerate(module)]
            for key, m in parts:
                hooks.append(m.register_forward_pre_hook(
                    lambda _, args, key=key: inputs.setdefault(key, []).append(args[0].detach().float().contiguous())))
        try:
            with torch.inference_mode(False), torch.no_grad():
                training = source.training
                source.eval()
                for y, z_hat in latents:
                    source(y.float(), z_hat.float())
                source.train(training)
        finally:
            for h in hooks:
                h.remove()
        return cls(source, Parameters(), inputs)


def calibration_latents(net, images: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """(y, z_hat) of each image (NCHW in [0, 1], sides multiples of 128) under the model's float32 transforms."""
    out = []
    with torch.no_grad():
        for x in images:
            y, z = net.analyse(x)
            z_hat, _ = net.entropy_bottleneck(z, training=False)
            out.append((y.contiguous(), z_hat.contiguous()))
    return out


#: Calibration crops: at most this side, from the top-left corner of each image.
CALIBRATION_SIDE = 384


def calibration_crops(images: Sequence[Tensor], side: int = CALIBRATION_SIDE) -> list[Tensor]:
    """Images (NCHW in [0, 1]) cropped to at most ``side`` and padded to multiples of 128."""
    from utils.padding import pad

    return [pad(x[..., :side, :side])[0] for x in images]


def sample_images() -> list[Tensor]:
    """The built-in sample photographs (``datasets.samples``) as calibration crops: data that ships with the code."""
    import numpy as np
    from skimage import data

    from datasets.samples import PHOTOS

    photos = [np.asarray(getattr(data, name)())[..., :3] for name in PHOTOS]
    return calibration_crops([torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255.0 for a in photos])


def integer_entropy_model(net) -> IntegerEntropyModel:
    """``net``'s entropy model in integers: from the integer parameters it carries (``net.integer_parameters``,
    read from a release file), or calibrated on the built-in sample photographs."""
    stored = getattr(net, "integer_parameters", None)
    if stored is not None:
        with single_threaded():  # thousands of tiny tensors: 0.5 s on one thread, 1.2-8 s on two
            return IntegerEntropyModel(net.entropy_model, Parameters(stored))
    return IntegerEntropyModel.calibrated(net.entropy_model, calibration_latents(net, sample_images()))


#: The entry of a checkpoint dict that holds the integer parameters (beside "state_dict").
CHECKPOINT_KEY = "integer_entropy"


def stored_parameters(checkpoint) -> dict[str, Tensor] | None:
    """The integer parameters a loaded checkpoint object carries (None: it carries none), checked to be a
    readable set (``IntegerParameterError`` otherwise; whether they build is checked when they are used)."""
    from .config import check_stored

    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        return None
    stored = checkpoint[CHECKPOINT_KEY]
    if not isinstance(stored, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in stored.items()):
        raise IntegerParameterError(f"the checkpoint's {CHECKPOINT_KEY!r} is not a dict of tensors")
    try:
        check_stored(stored)
    except ValueError as e:
        raise IntegerParameterError(f"integer parameters: {e}") from None
    return Parameters(stored).values
