"""Process tuning and state: memory reuse and running out of it, waiting for a device, whether other work loads
the machine."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch


#: How allocators word a failed allocation: CUDA's caching allocator, torch's CPU allocator, errno 12.
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(e: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, torch's OutOfMemoryError, or a RuntimeError in an allocator's
    words (torch's CPU allocator raises one; so does a data worker's re-raised error)."""
    if isinstance(e, MemoryError):
        return True
    import torch

    if isinstance(e, torch.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and any(s in str(e).lower() for s in _OUT_OF_MEMORY)


def synchronize(device: torch.device) -> None:
    """Wait for the device, so that a clock around its work measures the work."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """torch on one thread meanwhile: for work made of many small operations, where a second thread only
    waits at each one's barrier (and far longer when another job holds the other core)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of returning it.

    By default every large tensor is a fresh ``mmap`` whose pages fault in on
    first touch and go back to the kernel when it is freed: a forward pass of
    TCM on a Kodak image paid about 600 000 page faults (a sixth of its CPU
    time), and a training step of TCM-S (batch 8 of 256x256) spent a third of
    its CPU time in the kernel.  Here large blocks come from the heap instead of
    ``mmap`` (``M_MMAP_MAX`` 0: raising ``M_MMAP_THRESHOLD`` alone stops at
    32 MiB, below a training activation) and the heap is never trimmed, so a
    second pass reuses the first pass's memory.  The process keeps its peak
    memory until exit.  The command-line tools call this at start; it is a
    no-op (False) off glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold, m_mmap_max = -1, -2, -3, -4
    ok = mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value
    ok &= mallopt(m_mmap_max, 0)  # and above it: heap, not mmap
    ok &= mallopt(m_trim_threshold, (1 << 31) - 1)  # a C int: the largest
    ok &= mallopt(m_top_pad, 256 << 20)
    return bool(ok)


def process_age() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included), or None where unknown."""
    try:
        stat = open("/proc/self/stat").read()
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    started = int(stat.rpartition(")")[2].split()[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start, in ticks
    return max(0.0, uptime - started)


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes), or None where the system does not say."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def busy_note(load: float | None = None) -> str | None:
    """A note for timings made while other work loads the machine, or None.

    Busy means a 1-minute load average above the number of cores: processes
    then wait for a core, and wall times stretch by up to that ratio.
    ``load`` is a load average read earlier (at the start of a measurement).
    """
    load = load_average() if load is None else load
    cores = os.cpu_count() or 1
    if load is None or load <= cores:
        return None
    return f"the machine was busy: load average {load:.1f} on {cores} cores"
