"""Small helpers shared by the command-line tools."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import warnings

import torch.nn.functional as F

# CompressAI scripts a helper with torch.jit at import time, which current torch flags
# as deprecated; every tool imports this module or ``models`` first, both filter it.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from compressai.ops import compute_padding  # noqa: E402
from torch import Tensor

Padding = tuple[int, int, int, int]


def pad(x: Tensor, p: int = 128) -> tuple[Tensor, Padding]:
    """Zero-pad an NCHW batch, centred, to the next multiple of ``p`` on each side.

    TCM needs sides that are multiples of 128 (8x8 Swin windows on the 1/16
    latent); this is the padding of the paper's evaluation.  Returns the padded
    tensor and ``(left, right, top, bottom)`` for :func:`crop`.
    """
    h, w = x.shape[-2:]
    padding, _ = compute_padding(h, w, min_div=p)
    return F.pad(x, padding, mode="constant", value=0.0), padding


def crop(x: Tensor, padding: Padding) -> Tensor:
    """Undo :func:`pad`."""
    left, right, top, bottom = padding
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    A crash or kill while writing never leaves a half-written ``path``, and an
    existing file is only ever replaced by a complete new one.  The result gets
    the replaced file's permissions, or the umask's default for a new file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
