"""What a failed run says: out of memory with what to make smaller, anything else in one line."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from utils.cli import first_line

#: How allocators word a failed allocation: CUDA's caching allocator, torch's CPU allocator, errno 12.
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory")


class OutOfMemory(Exception):
    """A training step or test pass that did not fit in memory; the message says what to make smaller."""


def is_out_of_memory(e: BaseException) -> bool:
    """A failed allocation, in this process or reported from a data worker."""
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(e, RuntimeError) and any(s in str(e).lower() for s in _OUT_OF_MEMORY)


@contextlib.contextmanager
def out_of_memory_says(message: str) -> Iterator[None]:
    """Turn a failed allocation in the block into :class:`OutOfMemory` with ``message``."""
    try:
        yield
    except Exception as e:
        if is_out_of_memory(e):
            raise OutOfMemory(message) from None
        raise


def describe(e: BaseException) -> str:
    """``Type: message`` in one line (a data worker's error comes in its own words: ``training.workers``)."""
    message = first_line(e)
    return f"{type(e).__name__}: {message}" if message else type(e).__name__
