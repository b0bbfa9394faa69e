"""What a failed run says: out of memory with what to make smaller, anything else in one line."""

from __future__ import annotations

import contextlib
from typing import Iterator

from utils.cli import first_line
from utils.process import is_out_of_memory


class OutOfMemory(Exception):
    """A training step or test pass that did not fit in memory; the message says what to make smaller."""


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
