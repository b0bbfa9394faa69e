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
