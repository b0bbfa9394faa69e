"""FLOP counting, timing and the matmul yardstick (evaluation/speed.py)."""

from __future__ import annotations

import torch

from evaluation.speed import count_flops, run_times
from layers import WindowAttention


def test_flop_counter_counts_attention():
    """The counter sees the fused CPU attention (torch's own counts it as 0)."""
    m = WindowAttention(32, 16, 8, shifted=False).eval()
    x = torch.randn(1, 16, 16, 32)
    tokens, L, c = 256, 64, 32
    linears = 2 * tokens * c * 3 * c + 2 * tokens * c * c
    attention = 2 * 2 * tokens * L * c  # q.k and p.v, a multiply-add as 2
    assert count_flops(lambda: m(x)) == linears + attention


def test_run_times_takes_warm_up_and_repeats_with_the_given_clock():
    calls, ticks = [], iter(range(100))
    times = run_times(lambda: calls.append(1), repeats=3, device=torch.device("cpu"), warmup=2,
                      clock=lambda: next(ticks))
    assert len(calls) == 5 and times == [1, 1, 1]
