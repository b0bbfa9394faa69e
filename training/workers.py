"""Data workers that never outlive what they serve, and whose errors reach the user in their own words.

The workers ignore SIGTERM and SIGINT (:func:`~training.stop.ignore_stop_signals`),
so neither the loader's own shutdown (``terminate()``) nor Python's at exit
can end one that is busy or stranded: a run that failed with its workers
alive printed its traceback and then waited for them forever.  Here the
workers are killed outright (SIGKILL) when their loop ends by an exception,
and the kernel kills them when the trainer dies, however it dies.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import re
import signal
import sys
from typing import Iterable, Iterator

from torch.utils.data import DataLoader

from .stop import ignore_stop_signals

#: ``prctl`` option: the signal a process gets when its parent ends (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def _find_prctl():
    """libc's ``prctl``, looked up once in the trainer (a forked worker then only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()


def die_with_parent() -> bool:
    """Have the kernel SIGKILL this process when its parent ends (Linux; False elsewhere)."""
    if _PRCTL is None:
        return False
    return _PRCTL(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) == 0


#: The signals that ask a run to stop; the trainer alone acts on them.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of the data loaders: deaf to stop signals, dead with the trainer.

    The worker starts with the stop signals blocked (see :func:`batches`), so
    one sent to the whole process group while it starts, before torch's worker
    loop reaches this function (it installs a SIGTERM handler that exits),
    waits here and is discarded once the signals are ignored.
    """
    ignore_stop_signals(worker_id)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    die_with_parent()


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Block SIGTERM and SIGINT while workers are forked: they inherit the mask, the trainer gets its
    signals as soon as the block ends."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    except (ValueError, AttributeError, OSError):  # no signal masks here
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def batches(loader: DataLoader) -> Iterator[Iterator]:
    """Iterate ``loader``; when the block ends, its workers are gone.

    Ended normally, the workers are shut down as the loader does it (and
    any that did not stop are killed); ended by an exception, they are killed
    first, so a failure never waits for a worker busy with an image.
    """
    with _stop_signals_held():
        it = iter(loader)  # forks the workers
    try:
        yield it
    except BaseException as e:
        kill_workers(it)
        own = in_the_workers_words(e)
        if own is e:
            raise
        raise own from None
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # the multi-process iterator's own clean-up
        if shutdown is not None:
            shutdown()
        kill_workers(it)


def in_the_workers_words(e: BaseException) -> BaseException:
    """A data worker's exception as the worker raised it: its type, its own message.

    torch re-raises it in the trainer as the same type with a message of many
    lines, ``Caught T in DataLoader worker process K.``, then the worker's
    traceback, whose last entry is the original ``T: message``: shown in one
    line, that is all the user would read.  Any other exception is returned
    as it is, and so is one whose type cannot be made from a message.
    """
    message = worker_message(str(e))
    if message is None:
        return e
    try:
        if isinstance(e, KeyError):  # a traceback shows a KeyError's key as its repr
            return type(e)(ast.literal_eval(message))
        return type(e)(message)
    except Exception:
        return e


#: The start of the message torch re-raises a data worker's exception with.
_CAUGHT = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\n")


def worker_message(text: str) -> str | None:
    """The message of the exception a data worker raised, from the text torch re-raises it with; None for
    any other text.  Of chained exceptions, the last one's."""
    if not _CAUGHT.match(text):
        return None
    lines = text.splitlines()
    starts = [k for k, line in enumerate(lines) if line.endswith("Traceback (most recent call last):")]
    if not starts:
        return None
    for k in range(starts[-1] + 1, len(lines)):
        if lines[k] and not lines[k][0].isspace():  # the last entry, after the indented frames
            name, colon, message = "\n".join(lines[k:]).partition(": ")
            return message if colon and " " not in name else name
    return None


def kill_workers(it: Iterable) -> None:
    """SIGKILL the live worker processes of a loader's iterator and reap them."""
    workers = [w for w in getattr(it, "_workers", ()) if w.is_alive()]
    if not workers:
        return
    with _worker_deaths_expected():
        for w in workers:
            w.kill()
        for w in workers:
            w.join()


@contextlib.contextmanager
def _worker_deaths_expected() -> Iterator[None]:
    """Hold back torch's SIGCHLD handler, which reports a killed worker as a failure of its own.

    The workers are reaped before the handler is back, so it finds nothing to report.
    """
    try:
        previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    except (ValueError, AttributeError):  # not the main thread, or no SIGCHLD
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGCHLD, previous)
