"""Process tuning and state: memory reuse and running out of it, a library's import-time warnings, waiting for
a device."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def quiet_compressai_warnings() -> None:
    """Hide the FutureWarning current torch gives for CompressAI's ``torch.jit.script`` helpers.

    CompressAI scripts them at import time and on first use, so every run of
    every tool would print it.  The packages that import CompressAI call this
    first (pytest.ini filters it for the tests).
    """
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)


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
