"""Integer building blocks whose every result is exact, so that any machine computes the same integers.

A value is an integer tensor and a scale fixed when the layer is built (the
real value is their product).  GEMM inputs are int8 (|q| <= 127), weights
int8 (|w| <= 127), accumulators int32; everything between GEMMs is integers
held in float32 or float64.  Each operation is exact because of a bound:

- **int8 GEMMs** (``torch._int_mm``): integer products summed in int32, far
  below 2**31 (checked when a layer is built: :data:`ACC_MAX`).  oneDNN's x86
  kernels without VNNI add pairs of u8 x s8 products in saturating 16-bit
  sums (its documentation, "Nuances of int8 computations"), exact only when
  2 * 255 * |w| < 2**15, |w| <= 64.  So the first GEMM of a process checks
  whether this machine's kernel saturates (:func:`saturating_int8_gemm`); if
  it does, each weight matrix is split into two with |w| <= 64 whose exact
  sums add up to the same integers.  Every machine computes the same int32
  sums, one GEMM or two.
- **float32 GEMMs with integer operands** (attention scores and values):
  exact while every partial sum stays below 2**24, in any summation order, on
  any CPU or GPU; the operands stay within 2**8, so a float32 GEMM that
  rounds its inputs to bfloat16 or TF32 stays exact too.
- **requantisation**: mostly an arithmetic shift of the int32 accumulator
  (:class:`ShiftOut`: the weights' scales are chosen so that the ratio of
  scales is a power of two), or a lookup of the shifted accumulator in a
  table that applies a nonlinearity and any ratio of scales
  (:class:`TableOut`); where neither fits, an int32 accumulator (< 2**31)
  times a multiplier of at most 21 significant bits, below 2**52 and exact in
  float64 (:func:`requantize`, :class:`ExactOut`).
- **powers of two**: scaling by 2**k is exact (inputs and outputs of a
  network cross in exact dyadic floats, :func:`to_int8_pow2`).
- **tables** (:class:`TableOut`): GELU, sigmoid, tanh and exp are integer
  tables built when a layer is built, from IEEE-754 additions,
  multiplications, divisions and square roots only (which every machine
  rounds alike: :func:`exp2` builds powers of two from their bits, GELU's
  normal CDF comes from an integer grid), never from a library's exp or erf.
- **per-row divisions** (layer norm, softmax): integer square roots and
  reciprocals of integers below 2**53, computed exactly in float64 with an
  integer correction.

Nothing depends on the order of a floating-point sum or on a library's
transcendental functions.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: Largest |weight| of an int8 GEMM (see the module's text).
WEIGHT_MAX = 127
#: Largest |weight| that no int8 kernel saturates on (u8 x s8 pairs in 16 bits: 2 * 255 * 64 < 2**15).
SAFE_WEIGHT_MAX = 64
#: Largest |activation| of an int8 GEMM input.
ACT_MAX = 127
#: Largest |activation| of a 12-bit GEMM input (two int8 GEMMs, :func:`split_wide`).
WIDE_MAX = 2047
#: Largest |accumulator| (bias included) an int8 GEMM may reach: int32, and exact times a 21-bit multiplier in float64.
ACC_MAX = 2**31 - 1
#: Significant bits of a requantisation multiplier: (acc < 2**31) x (< 2**21) < 2**52.
MULTIPLIER_BITS = 21
#: Largest |value| of a 16-bit stream (residual paths, held in float32).
STREAM_MAX = 2**15 - 1
#: float32 sums of integers are exact below this.
FLOAT32_EXACT = 2**24


class IntegerBoundError(ValueError):
    """Integer parameters that would make a sum overflow its exact range (hostile or damaged weights)."""


def fixed_multiplier(m: float) -> float:
    """``m`` rounded to :data:`MULTIPLIER_BITS` significant bits (an exact float64, so that products are exact)."""
    if not math.isfinite(m) or m <= 0:
        raise IntegerBoundError(f"a requantisation multiplier of {m!r} (scales must be positive and finite)")
    mant, exp = math.frexp(m)
    return math.ldexp(round(math.ldexp(mant, MULTIPLIER_BITS)), exp - MULTIPLIER_BITS)


def fixed_multipliers(m: Tensor) -> Tensor:
    """:func:`fixed_multiplier` of each element (float64)."""
    return torch.tensor([fixed_multiplier(float(v)) for v in m.reshape(-1).tolist()],
                        dtype=torch.float64).reshape(m.shape)


def requantize(acc: Tensor, multiplier: Tensor | float, lo: float, hi: float, bias: Tensor | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """``clamp(round((acc + bias) * multiplier), lo, hi)`` in ``dtype``, exactly (see the module's text).

    ``acc`` holds integers below 2**31; ``multiplier`` (a float or one per
    channel, the last dimension) has at most 21 significant bits.
    """
    x = acc.to(torch.float64)
    if bias is not None:
        x = x + bias
    return (x * multiplier).round_().clamp_(lo, hi).to(dtype)


def exp2(e: Tensor) -> Tensor:
    """2**e (float64) for integer-valued ``e`` in [-1022, 1023], built from its bits: exact on any machine."""
    return ((e.to(torch.int64) + 1023) << 52).view(torch.float64)


def bit_length(v: Tensor) -> Tensor:
    """The bit length of positive integers held in a float tensor (float64), exactly (frexp's exponent)."""
    return torch.frexp(v.to(torch.float64)).exponent.to(torch.float64)


def pow2_exponents(max_abs: Tensor, limit: int) -> Tensor:
    """Per channel, the largest ``e`` with ``max_abs * 2**e <= limit`` (int64): exact power-of-two scales."""
    safe = torch.where(max_abs > 0, max_abs.double(), torch.ones_like(max_abs, dtype=torch.float64))
    e = torch.floor(torch.log2(limit / safe)).to(torch.int64)
    e = e - (safe * exp2(e) > limit).to(torch.int64)  # log2's last bits cannot push a value past the limit
    return e.clamp_(-60, 60)


def to_int8_pow2(x: Tensor, exponents: Tensor) -> Tensor:
    """A float tensor (NHWC) as int8 at per-channel scales ``2**-exponents``: exact scaling, rounding, clamping."""
    return (x * exp2(exponents).to(x.dtype)).round_().clamp_(-ACT_MAX, ACT_MAX).to(torch.int8)


def floor_ratio(numerator: Tensor | float, divisors: Tensor, bits: int = 22) -> Tensor:
    """About ``numerator / divisors`` with ``bits`` significant bits, rounded down, computed exactly (float64).

    ``numerator`` (a float or a tensor that broadcasts with ``divisors``) has
    at most 21 significant bits (:func:`fixed_multiplier`); ``divisors`` are
    positive integers below 2**30.  With M = Mi * 2**k and P chosen per element
    so that Q = floor(Mi * 2**P / d) has ``bits`` bits, the quotient is below
    2**(bits + 1) and d < 2**30, so a non-integer quotient lies at least 2**-30
    from an integer, more than half its float64 spacing: flooring the
    correctly rounded quotient is exact.  Returns Q * 2**(k - P).
    """
    mant, exp = torch.frexp(torch.as_tensor(numerator, dtype=torch.float64))
    mi = torch.round(mant * 2.0**MULTIPLIER_BITS)  # exact: a power-of-two scaling of a 21-bit mantissa
    k = exp.to(torch.float64) - MULTIPLIER_BITS
    p = bits + bit_length(divisors) - bit_length(mi)
    q = torch.floor(exp2(p) * mi / divisors.to(torch.float64))
    return q * exp2(k - p)


class RatioRequantizer(torch.nn.Module):
    """``requantize(values, floor_ratio(numerator, divisors), lo, hi)`` for a fixed ``numerator``, computed in
    fewer passes over the broadcast shape, with the same bits.

    With the numerator's 21-bit mantissa Mi = mhat * 2**b (mhat in [0.5, 1)),
    floor_ratio's quotient is floor(mhat * 2**(bits + bit_length(d)) / d):
    scaling by a power of two commutes with float64 rounding (no value here is
    near the subnormal or overflow range), so it equals floor((mhat / d) *
    2**(bits + bit_length(d))), and the factor is that quotient times
    2**(k + b - bits) times 2**-bit_length(d).  ``values`` (integers below
    2**24) times the quotient (below 2**24) stay below 2**48, so multiplying
    them in any order is exact.
    """

    def __init__(self, numerator: Tensor, bits: int = 22):
        super().__init__()
        mant, exp = torch.frexp(numerator.to(torch.float64))
        mi = torch.round(mant * 2.0**MULTIPLIER_BITS)
        b = bit_length(mi)
        self.register_buffer("mhat", mi * exp2(-b), persistent=False)
        self.register_buffer("post", exp2(exp.to(torch.float64) - MULTIPLIER_BITS + b - bits), persistent=False)
        self.bits = bits

    def forward(self, values: Tensor, divisors: Tensor, lo: float, hi: float, dtype: torch.dtype) -> Tensor:
        d = divisors.to(torch.float64)
        length = bit_length(d)
        t = torch.div(self.mhat, d).mul_(exp2(length + self.bits)).floor_()  # the quotient
        t.mul_(values).mul_(self.post).mul_(exp2(-length))  # float32 values promote exactly to float64
        return t.round_().clamp_(lo, hi).to(dtype)


@functools.lru_cache(maxsize=1)
def saturating_int8_gemm() -> bool:
    """Whether this process's CPU int8 GEMM saturates with 8-bit weights (oneDNN without VNNI): the exact sums
    of worst-case operands, at a few shapes, compared with int64 arithmetic."""
    for m, k, n in ((1, 64, 16), (16, 256, 64), (512, 1152, 96)):
        for sign in (1, -1):
            a = torch.full((m, k), ACT_MAX, dtype=torch.int8)
            b = torch.full((k, n), WEIGHT_MAX * sign, dtype=torch.int8)
            b[::2] *= -1 if sign < 0 else 1
            if not torch.equal(torch._int_mm(a, b).to(torch.int64), a.to(torch.int64) @ b.to(torch.int64)):
                return True
    return False


def split_weights(w: Tensor) -> tuple[Tensor, Tensor]:
    """``w`` (|w| <= 127) as two int8 matrices with |w| <= 64 that sum to it."""
    first = w.clamp(-SAFE_WEIGHT_MAX, SAFE_WEIGHT_MAX)
    return first.contiguous(), (w - first).contiguous()


def int8_matmul(x: Tensor, w: Tensor, parts: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """``x @ w`` for int8 ``x`` (M, K) and ``w`` (K, N): int32, exact on every machine.

    ``parts`` (:func:`split_weights` of ``w``) are used where the CPU's int8
    GEMM saturates; off the CPU the sums are float64 GEMMs, exact below 2**53.
    """
    if x.device.type != "cpu":
        return (x.double() @ w.double()).to(torch.int32)
    x = x.contiguous()
    if parts is not None and saturating_int8_gemm():
        return torch._int_mm(x, parts[0]).add_(torch._int_mm(x, parts[1]))
    return torch._int_mm(x, w)


def check_gemm_bounds(weight_q: Tensor, bias_q: Tensor | None, what: str, weight_hi: Tensor | None = None) -> None:
    """Refuse quantised weights whose sums (bias included) could leave int32 (or whose values exceed 8 bits)."""
    w = weight_q.to(torch.int64)
    if int(w.abs().max()) > WEIGHT_MAX:
        raise IntegerBoundError(f"{what}: an integer weight beyond ±{WEIGHT_MAX}")
    per_output = w.abs().reshape(-1, w.shape[-1]).sum(0) * (ACT_MAX + 1)
    if weight_hi is not None and weight_hi.numel():
        per_output = per_output + weight_hi.to(torch.int64).abs().reshape(-1, w.shape[-1]).sum(0) * 256 * 8
    if bias_q is not None:
        per_output = per_output + bias_q.abs().to(torch.int64)
    if int(per_output.max()) > ACC_MAX:
        raise IntegerBoundError(f"{what}: sums up to {int(per_output.max())} would leave the int32 accumulator")


def quantize_weights(weight: Tensor, in_scale: Tensor, target: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(int weights (taps, K, N), their scales (N,), float64) for float ``weight`` (N, K, ...) whose inputs have
    per-channel scales ``in_scale`` (K).

    Free (``target`` None): each output channel's largest |weight| becomes
    127.  With ``target`` (N,), each channel's scale is ``target * 2**-k``
    for the integer k that keeps its weights within 127 and uses at least
    half the range: the layer's sums then reach the target scale by a shift.
    """
    w = weight.detach().double().reshape(weight.shape[0], weight.shape[1], -1)  # (N, K, taps)
    w = w * in_scale.double()[None, :, None]
    peak = w.abs().amax(dim=(1, 2))
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    if target is None:
        scale = peak / WEIGHT_MAX
    else:
        k = torch.floor(torch.log2(target.double() * WEIGHT_MAX / peak))
        k = k + ((target * exp2(-(k + 1)) * WEIGHT_MAX) >= peak).double()  # log2's last bits cannot waste a bit
        k = k - ((target * exp2(-k) * WEIGHT_MAX) < peak).double()  # ... nor overflow
        scale = target.double() * exp2(-k)
    q = torch.round(w / scale[:, None, None]).clamp_(-WEIGHT_MAX, WEIGHT_MAX)
    return q.permute(2, 1, 0).contiguous(), scale


class IntLinear(torch.nn.Module):
    """A linear layer (or 1x1 convolution) on int8 NHWC inputs: 8-bit weights, int32 sums, then ``out``.

    ``weight`` (K, N) int8.  The channels from ``wide_from`` on take 12-bit inputs
    (:func:`split_wide`): their high parts go through a second GEMM, weighted
    by 256.  ``out`` turns the int32 sums into the layer's output
    (:class:`ShiftOut`, :class:`TableOut`, :class:`ExactOut`).
    """

    def __init__(self, weight: Tensor, out: torch.nn.Module, what: str, wide_from: int | None = None):
        super().__init__()
        wide_from = weight.shape[-2] if wide_from is None else wide_from
        flat = weight.reshape(-1, weight.shape[-1])
        high = weight[..., wide_from:, :].reshape(-1, weight.shape[-1])
        check_gemm_bounds(flat, getattr(out, "bias", None), what, high)
        self.register_buffer("weight", flat.to(torch.int8).contiguous(), persistent=False)
        self.register_buffer("weight_hi", high.to(torch.int8).contiguous(), persistent=False)
        self.parts = [split_weights(w) for w in (self.weight, self.weight_hi)]  # for kernels that saturate
        self.out = out

    def _columns(self, x: Tensor) -> Tensor:
        return x.reshape(-1, x.shape[-1])

    def accumulate(self, x: Tensor, high: Tensor | None) -> Tensor:
        acc = int8_matmul(self._columns(x), self.weight, self.parts[0])
        if high is not None:
            acc += int8_matmul(self._columns(high), self.weight_hi, self.parts[1]) * 256
        return acc.view(*x.shape[:-1], -1)

    def forward(self, x: Tensor, high: Tensor | None = None) -> Tensor:
        return self.out(self.accumulate(x, high))


class IntConv3x3(IntLinear):
    """A 3x3 stride-1 convolution (zero padding 1) on int8 NHWC maps: one int8 GEMM on the nine shifted copies
    of the map side by side (tap-major columns)."""

    def _columns(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        padded = F.pad(x, (0, 0, 1, 1, 1, 1))
        # (b, h, w, tap row, tap column, c) as a view of the padded map; reshape copies it once (half a cat's time)
        taps = padded.unfold(1, 3, 1).unfold(2, 3, 1).permute(0, 1, 2, 4, 5, 3)
        return taps.reshape(-1, 9 * c)


class ShiftOut(torch.nn.Module):
    """``clamp((acc + bias) >> shift, lo, hi)`` per output channel: requantisation by an arithmetic shift.

    ``bias`` holds the layer's bias on the accumulator's grid plus half a step
    of the shift (rounding to nearest); int32 throughout.
    """

    def __init__(self, bias: Tensor, shift: Tensor, lo: int, hi: int, dtype: torch.dtype):
        super().__init__()
        if shift.numel() and (int(shift.min()) < 0 or int(shift.max()) > 30):
            raise IntegerBoundError(f"a requantisation shift outside 0..30 ({shift.tolist()[:4]}...)")
        half = torch.where(shift > 0, exp2(shift - 1), torch.zeros_like(shift, dtype=torch.float64))
        self.register_buffer("bias", (bias.double() + half).to(torch.int64), persistent=False)
        self.register_buffer("bias32", self.bias.to(torch.int32), persistent=False)
        self.register_buffer("shift", shift.to(torch.int32), persistent=False)
        self.lo, self.hi, self.dtype = lo, hi, dtype

    def forward(self, acc: Tensor) -> Tensor:
        acc = torch.bitwise_right_shift(acc.add_(self.bias32), self.shift, out=acc).clamp_(self.lo, self.hi)
        return acc.to(self.dtype)


class TableOut(torch.nn.Module):
    """``table[c, clamp(floor((acc + bias) / 2**shift), -grid, grid)]`` per output channel: a nonlinearity, or any
    ratio of scales, on the accumulator's top bits.  ``values`` (C, 2 * grid + 1) are indexed from -grid."""

    def __init__(self, bias: Tensor, shift: Tensor, values: Tensor, grid: int, dtype: torch.dtype):
        super().__init__()
        c, n = values.shape
        if n != 2 * grid + 1 or (shift.numel() and (int(shift.min()) < 0 or int(shift.max()) > 30)):
            raise IntegerBoundError(f"a table of {n} entries, or an index shift outside 0..30")
        self.register_buffer("bias", bias.double(), persistent=False)
        self.register_buffer("bias32", torch.round(bias.double()).to(torch.int32), persistent=False)
        self.register_buffer("shift", shift.to(torch.int32), persistent=False)
        self.register_buffer("start", (torch.arange(c) * n + grid).to(torch.int32), persistent=False)
        self.register_buffer("values", values.to(dtype).reshape(-1).contiguous(), persistent=False)
        self.grid = grid

    def forward(self, acc: Tensor) -> Tensor:
        idx = torch.bitwise_right_shift(acc.add_(self.bias32), self.shift, out=acc)
        idx = idx.clamp_(-self.grid, self.grid).add_(self.start)
        return self.values.index_select(0, idx.reshape(-1)).view(idx.shape)


class ExactOut(torch.nn.Module):
    """``clamp(round((acc + bias) * multiplier), lo, hi)`` in float64, exact (:func:`requantize`): for outputs
    whose ratio of scales is neither a power of two nor worth a table."""

    def __init__(self, bias: Tensor, multiplier: Tensor, lo: float, hi: float, dtype: torch.dtype):
        super().__init__()
        self.register_buffer("bias", bias.double(), persistent=False)
        self.register_buffer("multiplier", multiplier.double(), persistent=False)
        self.lo, self.hi, self.dtype = lo, hi, dtype

    def forward(self, acc: Tensor) -> Tensor:
        return requantize(acc, self.multiplier, self.lo, self.hi, self.bias, self.dtype)


def split_wide(x: Tensor, exponents: Tensor, wide_from: int) -> tuple[Tensor, Tensor | None]:
    """A float map (NHWC) at per-channel scales ``2**-exponents`` as GEMM inputs: int8 for the channels before
    ``wide_from``, 12 bits for the others (split as x = 256 * high + low with low in [-128, 127] and high in
    [-8, 8]); exactly.  Returns (low, high of the wide channels, or None)."""
    q = (x * exp2(exponents).to(x.dtype)).round_()
    c = x.shape[-1]
    if wide_from >= c:
        return q.clamp_(-ACT_MAX, ACT_MAX).to(torch.int8), None
    low = torch.empty(q.shape, dtype=torch.int8, device=q.device)
    if wide_from > 0:
        low[..., :wide_from] = q[..., :wide_from].clamp(-ACT_MAX, ACT_MAX)
    w = q[..., wide_from:].clamp_(-WIDE_MAX, WIDE_MAX)
    high = torch.floor((w + 128) * (1.0 / 256))
    low[..., wide_from:] = w - 256 * high
    return low, high.to(torch.int8)


def shift_right(x: Tensor, shift: Tensor, lo: int, hi: int, dtype: torch.dtype = torch.int8) -> Tensor:
    """``clamp(round(x / 2**shift), lo, hi)`` for int32 ``x`` and per-channel shifts >= 0 (round half up)."""
    half = torch.where(shift > 0, torch.bitwise_left_shift(torch.ones_like(shift), (shift - 1).clamp(min=0)),
                       torch.zeros_like(shift))
    return torch.bitwise_right_shift(x + half, shift).clamp_(lo, hi).to(dtype)


class Table(torch.nn.Module):
    """An integer function of integers in ``[lo, lo + n)``, looked up: one table, or one per channel (the last
    dimension) when ``values`` is (C, n)."""

    def __init__(self, values: Tensor, lo: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        values = values if values.dim() == 2 else values[None]
        self.n = values.shape[-1]
        self.register_buffer("values", values.to(dtype).reshape(-1).contiguous(), persistent=False)
        self.register_buffer("offsets", torch.arange(values.shape[0], dtype=torch.int64) * self.n, persistent=False)
        self.lo = int(lo)

    def forward(self, x: Tensor) -> Tensor:
        idx = (x - self.lo).to(torch.int64).clamp_(0, self.n - 1)
        if self.offsets.numel() > 1:
            idx += self.offsets
        return self.values.index_select(0, idx.reshape(-1)).view(idx.shape)


def isqrt(v: Tensor) -> Tensor:
    """floor(sqrt(v)) of non-negative integers below 2**52 held in float64: exact (a correction after sqrt)."""
    r = torch.floor(torch.sqrt(v))
    r = r - (r * r > v).to(r.dtype)
    return r + ((r + 1) * (r + 1) <= v).to(r.dtype)


def layer_norm_int8(x: Tensor, z_exp: int, eps: int) -> Tensor:
    """(x - mean) / sqrt(var + eps) over the last dimension, at scale 2**-z_exp, rounded into int8; exactly.

    ``x`` holds integers with |x| <= :data:`STREAM_MAX` (int32), C <= 1024
    channels; ``eps`` is the norm's epsilon on x's integer grid, an integer.
    S1 = sum(x) and S2 = sum(x**2) are integer sums (x**2 < 2**30), V = C*S2 -
    S1**2 + C*C*eps is below 2**52, and z = (C*x - S1) / sqrt(V).  Per row, D =
    isqrt(V) and R = floor(2**P / D), P chosen so that R has 22 bits; then z *
    2**z_exp = (C*x - S1) * R / 2**(P - z_exp), |C*x - S1| * R < 2**(27 + 23):
    float64 products of integers, exact, rounded half up.  (The affine weights
    of the norm are folded into the layer that follows.)
    """
    c = x.shape[-1]
    t = x.to(torch.float64)  # every sum and product below is an integer under 2**53: exact in any order
    s1 = t.sum(-1, keepdim=True)
    s2 = (t * t).sum(-1, keepdim=True)
    v = (c * s2 - s1 * s1).clamp_(min=0) + float(c * c * eps)
    d = isqrt(v).clamp_(min=1)
    p = 22 + bit_length(d)
    r = torch.floor(exp2(p) / d)  # a quotient below 2**23 of integers below 2**53: exact floor
    # (C*x - S1) * R < 2**50, then the power-of-two scaling by 2**(z_exp - P): exact; floor(t + 0.5) is the
    # arithmetic shift's rounding (the sum is exact wherever |t| >= 0.5, and cannot reach 0 or 1 from inside).
    t = t.mul_(c).sub_(s1).mul_(r.mul_(exp2(z_exp - p)))
    return t.add_(0.5).floor_().clamp_(-ACT_MAX, ACT_MAX).to(torch.int8)


# ------------------------------------------------------------------ tables, the same on every machine
# The tables are computed when a model is built, from its stored scales, with float64 additions,
# multiplications and divisions only: IEEE 754 rounds each exactly, so every machine computes the same
# bits (no library exp or erf, whose last bits differ between libraries).  They need only be close to the
# true functions (far closer than the 8- to 16-bit values they are rounded to); they must be the same.
_LN2_HI = 0.693145751953125  # ln 2 split so that n * _LN2_HI is exact for |n| < 2**11
_LN2_LO = 1.4286068203094173e-06


def exp_(x: Tensor) -> Tensor:
    """exp(x) for float64 ``x`` in [-700, 700], from basic operations (relative error about 1e-15)."""
    n = torch.round(x * (1.0 / math.log(2)))
    r = (x - n * _LN2_HI) - n * _LN2_LO  # |r| <= 0.35: 14 Taylor terms leave less than 1e-17
    total = torch.ones_like(r)
    for k in range(14, 0, -1):  # Horner: 1 + r (1 + r/2 (1 + r/3 (...)))
        total = total * r * (1.0 / k) + 1.0
    return total * exp2(n)


#: The grid of the normal distribution function behind :func:`gelu_`: step 2**-10 over [-PHI_RANGE, PHI_RANGE].
PHI_RANGE, PHI_STEP = 10.0, 2.0**-10


@functools.lru_cache(maxsize=1)
def _phi_grid() -> Tensor:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2 on a fine grid, from erf's series of positive terms,
    erf(t) = 2/sqrt(pi) exp(-t*t) sum_n (2 t*t)**n t / (1*3*...*(2n+1)), summed until the terms vanish."""
    x = torch.arange(round(2 * PHI_RANGE / PHI_STEP) + 1, dtype=torch.float64) * PHI_STEP - PHI_RANGE  # exact values
    t = x.abs() * (1.0 / math.sqrt(2.0))
    term = t.clone()
    total = t.clone()
    for n in range(1, 200):
        term = term * (2.0 * t * t) / (2 * n + 1)
        total = total + term
    erf = (total * exp_(-t * t) * (2.0 / math.sqrt(math.pi))).clamp_(max=1.0)
    return 0.5 + 0.5 * torch.sign(x) * erf


def gelu_(x: Tensor) -> Tensor:
    """x * Phi(x), Phi linearly interpolated on :func:`_phi_grid` (error below 1e-8)."""
    grid = _phi_grid()
    u = (x.clamp(-PHI_RANGE, PHI_RANGE) + PHI_RANGE) * (1.0 / PHI_STEP)  # exact: a power-of-two step
    i = torch.floor(u).clamp_(max=grid.numel() - 2)
    f = u - i
    lo, hi = grid[i.long()], grid[i.long() + 1]
    return x * (lo + (hi - lo) * f)


def sigmoid_(x: Tensor) -> Tensor:
    return 1.0 / (1.0 + exp_((-x).clamp(max=700.0)))


def half_tanh_(x: Tensor) -> Tensor:
    """0.5 * tanh(x) (latent residual prediction's output)."""
    e = exp_((-2.0 * x.abs()).clamp(min=-700.0))
    return 0.5 * torch.sign(x) * (1.0 - e) / (1.0 + e)


def leaky_relu_(x: Tensor) -> Tensor:
    return torch.where(x >= 0, x, x * 0.01)
