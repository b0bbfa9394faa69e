"""glibc malloc tuning and telling a failed allocation (utils/process.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


_FAULTS = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from utils.process import keep_freed_memory
from tests.helpers import tiny_tcm
if {keep}:
    assert keep_freed_memory()
net = tiny_tcm(seed=0).eval()
x = torch.rand(1, 3, 512, 512)
def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
with torch.no_grad():
    before = faults()
    net(x)
    first = faults() - before
    for _ in range(8):
        net(x)
print(first, faults() - before - first)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
@pytest.mark.slow
def test_keep_freed_memory_stops_page_faults_on_reuse():
    """After one forward pass, later passes reuse its memory instead of faulting pages in again."""
    code = _FAULTS.format(root=str(Path(__file__).resolve().parents[2]), keep=True)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, later = map(int, done.stdout.split()[-2:])
    # The first pass faults its ~120 MiB in (about 30 000 pages here); eight more passes
    # without reuse would fault eight times that.  Reused, the heap still grows now and
    # then while its free blocks settle (seen: 2 to 5 pages, at times 4 096 more), far below one pass.
    # With glibc's defaults the count depends on its dynamic thresholds (seen here:
    # 122 593 for three passes in one environment, 1 in another), so it is not asserted.
    assert first > 5000 and later < first // 2


_LARGE_KEPT = """
import os, sys, torch
sys.path.insert(0, {root!r})
from utils.process import keep_freed_memory
if {keep}:
    assert keep_freed_memory()
def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
t = torch.ones(1 << 24)  # 64 MiB, above the largest mmap threshold glibc accepts (32 MiB)
before = rss()
del t
print(before - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
@pytest.mark.slow
def test_keep_freed_memory_keeps_blocks_above_the_mmap_threshold():
    """A freed 64 MiB training activation stays with the process for the next one to reuse.

    glibc maps such blocks with ``mmap`` and unmaps them on ``free``, so every
    step of training faulted all of its large activations in afresh.
    """
    def released(keep: bool) -> int:
        code = _LARGE_KEPT.format(root=str(Path(__file__).resolve().parents[2]), keep=keep)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return int(done.stdout.split()[-1])

    assert released(keep=False) >= 60 << 20  # the default: handed back to the kernel
    assert released(keep=True) < 1 << 20


def test_a_failed_allocation_is_told_in_each_allocators_words():
    """What the trainer and the evaluation both take for running out of memory (one place for both)."""
    import torch

    from utils.process import is_out_of_memory

    told = [MemoryError(), torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
            RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                         "to allocate 123456789 bytes. Error code 12 (Cannot allocate memory)"),
            RuntimeError("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback ...\n"
                         "RuntimeError: CUDA error: out of memory")]
    assert all(is_out_of_memory(e) for e in told)
    assert not any(is_out_of_memory(e) for e in (RuntimeError("shape mismatch"), ValueError("out of memory")))


def test_single_threaded_runs_on_one_thread_and_gives_the_threads_back_even_after_an_error():
    import torch

    from utils.process import single_threaded

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with single_threaded():
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
