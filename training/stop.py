"""Stopping a run cleanly: on SIGTERM / Ctrl-C or at a time budget, after the current step.

A cluster pre-empts a job with SIGTERM, then kills it a while later; a shared
machine gives a job a time slot.  Either way the run should end with a
checkpoint it can resume from, not lose the epoch in progress.  The first
signal (or the budget) asks the training loop to stop after the step it is
in; the loop saves a mid-epoch checkpoint and ends.  A second signal stops at
once (the last saved checkpoint is then the one to resume from).
"""

from __future__ import annotations

import signal
import time

from utils.cli import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated

from .distributed import Dist, all_max

#: Why a run stops early, weakest first.
REASONS = (None, "budget", "interrupted", "terminated")


def ignore_stop_signals(worker_id: int) -> None:
    """``worker_init_fn`` of the data loaders: the trainer alone decides when to stop.

    A cluster's pre-emption (Slurm signals every process of the job) and a
    terminal's Ctrl-C (the whole foreground process group) reach the data
    workers too; a worker killed by SIGTERM ends the run in a traceback
    instead of the clean stop, and one that exits on SIGINT can break the
    batch the trainer still waits for.  Ignoring both leaves the ending of
    the workers to the trainer (see :mod:`training.workers`).
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class StopRequest:
    """Polled by the training loop between steps; agreed by all processes."""

    def __init__(self, max_minutes: float | None = None):
        self.deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
        self.max_minutes = max_minutes
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    # ------------------------------------------------------------- signals
    def install(self) -> "StopRequest":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                pass
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame) -> None:
        if self.signal is not None:  # the second one: no more waiting
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        self.signal = signum

    # ------------------------------------------------------------- polling
    def local_reason(self) -> str | None:
        if self.signal is not None:
            return "terminated" if self.signal == signal.SIGTERM else "interrupted"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "budget"
        return None

    def should_stop(self, d: Dist) -> str | None:
        """The reason to stop now, the strongest any process has (a collective call)."""
        reason = self.local_reason()
        return REASONS[int(all_max(d, REASONS.index(reason)))]

    def exit_status(self, reason: str) -> int:
        return {"budget": 0, "interrupted": EXIT_INTERRUPTED, "terminated": EXIT_TERMINATED}[reason]
