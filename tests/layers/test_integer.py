"""The exact integer building blocks (layers/integer.py): each result against exact arithmetic, the bounds that
make them exact refused when broken, and the tables the same from basic operations."""

from __future__ import annotations

import hashlib
import math
import random
import subprocess
import sys
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from layers import integer
from layers.integer import (ACT_MAX, IntConv3x3, IntegerBoundError, IntLinear, RatioRequantizer, ShiftOut, TableOut,
                            exp2, exp_, fixed_multiplier, fixed_multipliers, floor_ratio, gelu_, half_tanh_, int8_matmul, isqrt, layer_norm_int8,
                            quantize_weights, requantize, sigmoid_, split_weights, split_wide)
from tests.helpers import ROOT


def _int8(*shape, seed=0, lo=-127, hi=127):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int8)


@pytest.mark.parametrize("saturating", [False, True])
def test_int8_gemms_are_exact_with_one_matrix_or_two(monkeypatch, saturating):
    """The split into two matrices of |w| <= 64 (for kernels that saturate) gives the same int32 sums."""
    if not saturating and integer.saturating_int8_gemm():
        pytest.skip("this CPU's int8 GEMM saturates with 8-bit weights: only the split runs here")
    monkeypatch.setattr(integer, "saturating_int8_gemm", lambda: saturating)
    for seed, (m, k, n) in enumerate(((1, 1, 1), (17, 300, 33), (64, 1152, 96))):
        x, w = _int8(m, k, seed=seed), _int8(k, n, seed=seed + 10)
        w[0] = 127  # worst cases of a saturating kernel
        x[:, 0] = 127
        want = x.to(torch.int64) @ w.to(torch.int64)
        assert torch.equal(int8_matmul(x, w, split_weights(w)).to(torch.int64), want)
    a, b = split_weights(w)
    assert int(a.abs().max()) <= 64 and int(b.abs().max()) <= 64 and torch.equal(a.int() + b.int(), w.int())


def test_requantisation_is_exact():
    rng = random.Random(1)
    acc = torch.tensor([rng.randrange(-2**31 + 1, 2**31) for _ in range(2000)], dtype=torch.int64)
    m = fixed_multiplier(rng.uniform(1e-9, 1e-6))
    got = requantize(acc, m, -2**40, 2**40, dtype=torch.float64)
    frac = Fraction(m)
    for a, g in zip(acc.tolist(), got.tolist()):
        v = a * frac
        want = math.floor(v + Fraction(1, 2))
        if v + Fraction(1, 2) == want and want % 2:  # a tie rounds to even
            want -= 1
        assert g == want
    assert fixed_multiplier(m) == m and len(bin(Fraction(m).numerator)) - 2 <= integer.MULTIPLIER_BITS


def test_floor_ratio_and_isqrt_are_exact():
    rng = random.Random(2)
    d = torch.tensor([rng.randrange(1, 2**30) for _ in range(3000)], dtype=torch.float64)
    m = fixed_multiplier(rng.uniform(0.5, 3.0))
    got = floor_ratio(m, d)
    for di, g in zip(d.tolist(), got.tolist()):
        exact = Fraction(m) / int(di)
        assert g <= exact and Fraction(g).denominator & (Fraction(g).denominator - 1) == 0  # a dyadic, below
        assert exact - g < exact * Fraction(1, 2**21)  # 22 significant bits
    v = torch.tensor([rng.randrange(0, 2**52) for _ in range(3000)] + [k * k for k in range(1000)]
                     + [k * k - 1 for k in range(1, 1000)], dtype=torch.float64)
    assert [int(r) for r in isqrt(v).tolist()] == [math.isqrt(int(x)) for x in v.tolist()]


def test_layer_norm_is_exact():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-2**15 + 1, 2**15, (64, 48), generator=g, dtype=torch.int32)
    x[0] = 5  # a constant row: the epsilon decides
    z_exp, eps = 4, 7
    got = layer_norm_int8(x, z_exp, eps)
    c = x.shape[-1]
    for row, out in zip(x.tolist(), got.tolist()):
        s1, s2 = sum(row), sum(v * v for v in row)
        d = max(math.isqrt(c * s2 - s1 * s1 + c * c * eps), 1)
        p = 22 + d.bit_length()
        r = (1 << p) // d
        want = [max(-ACT_MAX, min(ACT_MAX, ((c * v - s1) * r + (1 << (p - z_exp - 1))) >> (p - z_exp))) for v in row]
        assert out == want
    z = (x.double() - x.double().mean(-1, keepdim=True)) / (x.double().var(-1, unbiased=False, keepdim=True) + eps).sqrt()
    assert ((got.double() - (z * 2**z_exp).clamp(-127, 127)).abs() <= 1.01).all()  # and it is a layer norm


def test_layers_compute_exact_sums_and_outputs():
    torch.manual_seed(4)
    weight = torch.randn(24, 20, 3, 3)
    in_scale = torch.rand(20).double() + 0.5
    q, w_scale = quantize_weights(weight, in_scale)
    assert int(q.abs().max()) == 127 and q.shape == (9, 20, 24)
    bias = torch.round(torch.randn(24).double() * 1000)
    shift = torch.randint(0, 12, (24,))
    layer = IntConv3x3(q, ShiftOut(bias, shift, -2**20, 2**20, torch.int32), "test")
    x = _int8(2, 7, 9, 20, seed=5)
    acc = F.conv2d(x.permute(0, 3, 1, 2).double(), q.permute(2, 1, 0).reshape(24, 20, 3, 3).double(), padding=1)
    acc = acc.permute(0, 2, 3, 1).to(torch.int64) + bias.to(torch.int64)
    want = torch.div(acc + torch.where(shift > 0, 2 ** (shift - 1), 0), 2**shift, rounding_mode="floor")
    assert torch.equal(layer(x).to(torch.int64), want.clamp(-2**20, 2**20))
    values = torch.randint(-127, 128, (24, 2 * 15 + 1)).double()
    table = IntConv3x3(q, TableOut(bias, shift, values, 15, torch.int8), "test")
    idx = torch.div(acc, 2**shift, rounding_mode="floor").clamp(-15, 15) + 15
    assert torch.equal(table(x).to(torch.int64), values.gather(1, idx.reshape(-1, 24).t()).t().reshape(idx.shape).long())
    # 12-bit inputs: the same sums as the exact values
    xf = torch.randint(-2047, 2048, (1, 5, 6, 20)).double()
    low, high = split_wide(xf, torch.zeros(20, dtype=torch.int64), 8)
    assert torch.equal(low[..., :8].double(), xf[..., :8].clamp(-127, 127))
    assert torch.equal(low[..., 8:].double() + 256 * high.double(), xf[..., 8:])
    wide = IntLinear(q[4], ShiftOut(torch.zeros(24), torch.zeros(24, dtype=torch.int64), -2**30, 2**30, torch.int64),
                     "test", wide_from=8)
    exact = torch.cat([xf[..., :8].clamp(-127, 127), xf[..., 8:]], -1) @ q[4].double()
    assert torch.equal(wide(low, high).double(), exact)


def test_bounds_that_would_break_exactness_are_refused():
    q = torch.full((1, 4096, 2), 127, dtype=torch.int8)
    with pytest.raises(IntegerBoundError, match="int32"):
        IntLinear(q[0], ShiftOut(torch.full((2,), 2.0**31), torch.zeros(2, dtype=torch.int64), 0, 1, torch.int8), "x")
    with pytest.raises(IntegerBoundError, match="shift"):
        ShiftOut(torch.zeros(2), torch.tensor([0, 31]), 0, 1, torch.int8)
    with pytest.raises(IntegerBoundError, match="multiplier"):
        fixed_multiplier(0.0)


def test_table_functions_are_close_to_torchs():
    x = torch.linspace(-30, 30, 20001, dtype=torch.float64)
    assert (gelu_(x) - F.gelu(x)).abs().max() < 1e-7
    assert ((exp_(x) - torch.exp(x)) / torch.exp(x)).abs().max() < 1e-14
    assert (sigmoid_(x) - torch.sigmoid(x)).abs().max() < 1e-14
    assert (half_tanh_(x) - 0.5 * torch.tanh(x)).abs().max() < 1e-14
    assert torch.equal(exp2(torch.arange(-5, 6)), 2.0 ** torch.arange(-5, 6, dtype=torch.float64))


_TABLES = """
import hashlib, torch
from layers.integer import exp_, gelu_, half_tanh_, sigmoid_
x = torch.arange(-49152, 49153, dtype=torch.float64) * 2.0**-12 * 1.0123  # not linspace: its own last bits differ
h = hashlib.sha256()
for f in (exp_, gelu_, half_tanh_, sigmoid_):
    h.update(f(x).numpy().tobytes())
print(h.hexdigest())
"""


@pytest.mark.slow
def test_table_functions_give_the_same_bits_under_another_cpus_arithmetic():
    """Basic operations round exactly on every machine: the functions that build tables give the same bits with
    torch's kernels held to AVX2 and to scalar code (other vector widths, other code paths)."""
    runs = []
    for env in ({}, {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, {"ATEN_CPU_CAPABILITY": "default"}):
        done = subprocess.run([sys.executable, "-c", _TABLES], capture_output=True, text=True, cwd=ROOT,
                              env={**__import__("os").environ, **env}, check=True)
        runs.append(done.stdout.strip())
    assert len(set(runs)) == 1 and len(runs[0]) == 64
    assert hashlib.sha256(b"").hexdigest() not in runs


def test_the_ratio_requantizer_computes_floor_ratio_and_requantize_bit_for_bit():
    """Window attention's output scaling: one factor per row and channel, computed in fewer passes."""
    g = torch.Generator().manual_seed(5)
    numerator = fixed_multipliers(torch.rand(4, 1, 8, generator=g, dtype=torch.float64) * 0.02 + 1e-5)
    divisors = torch.randint(1024, 2**16 + 1, (3, 4, 64, 1), generator=g).float()
    values = torch.randint(-2**23 + 1, 2**23, (3, 4, 64, 8), generator=g).float()
    want = requantize(values, floor_ratio(numerator, divisors), -ACT_MAX, ACT_MAX, dtype=torch.int8)
    got = RatioRequantizer(numerator)(values, divisors, -ACT_MAX, ACT_MAX, torch.int8)
    assert torch.equal(got, want)
