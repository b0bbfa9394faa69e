"""Measuring speed: FLOPs by torch's counter, clocks, this machine's matmul rate, peak memory."""

from __future__ import annotations

import resource
import statistics
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from utils.process import synchronize


# ---------------------------------------------------------------- FLOPs
# The counter hands custom formulas the shapes of the tensor arguments.
def _sdpa_cpu_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward_flops(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def flop_counter() -> FlopCounterMode:
    """torch's counter, plus the CPU flash-attention kernels it does not know.

    Without them attention would count 0 FLOPs on CPU whenever SDPA picks its
    fused kernel, so the counts would depend on the implementation.
    """
    mapping = {}
    aten = torch.ops.aten
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flops
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward_flops
    return FlopCounterMode(display=False, custom_mapping=mapping)


def count_flops(fn: Callable[[], object], grad: bool = False) -> int:
    """FLOPs of one call (under no_grad unless ``grad``: the counter's module tracker
    cannot run under inference_mode)."""
    counter = flop_counter()
    with counter, torch.set_grad_enabled(grad):
        fn()
    return counter.get_total_flops()


# ---------------------------------------------------------------- timing
def run_times(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Clock times of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = clock()
        fn()
        synchronize(device)
        times.append(clock() - t0)
    return times


def median_time(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1,
                clock: Callable[[], float] = time.perf_counter) -> float:
    return statistics.median(run_times(fn, repeats, device, warmup, clock))


def matmul_rate(device: torch.device, quick: bool, clock: Callable[[], float] = time.perf_counter,
                dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a large square matmul in ``dtype`` (float32 with torch's default TF32 settings on CUDA).

    The yardstick of a measurement in that arithmetic: a bfloat16 model is
    compared with a bfloat16 matmul, which runs several times faster than a
    float32 one where the CPU has bfloat16 units.  The best of several runs,
    not the median: the yardstick is what the machine can do, and a run slowed
    by another job would flatter the shares.  ``quick`` takes fewer runs of
    the same size (a smaller matmul reaches less of the machine's rate, and
    shares above 100 % would follow).
    """
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n**3 / min(run_times(lambda: torch.mm(a, b), 3 if quick else 9, device, 1, clock)) / 1e9


class PeakMemory:
    """Peak memory of one measurement: ru_maxrss growth on CPU, allocator peak on CUDA."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.bytes = max(0, peak - self.base)


