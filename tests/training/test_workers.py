"""Data workers never outlive what they serve (training/workers.py)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from torch.utils.data import DataLoader, Dataset

from training.workers import batches, die_with_parent, worker_init


class SlowAfterFirst(Dataset):
    """Item 0 at once, every other one after a minute: workers busy when the loop ends."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if index:
            time.sleep(60)
        return index


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for a parent that does not reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_failure_in_the_loop_kills_busy_workers_at_once():
    """The loader's own shutdown waits for a busy worker, then sends SIGTERM, which the workers ignore."""
    loader = DataLoader(SlowAfterFirst(), batch_size=1, num_workers=2, worker_init_fn=worker_init)
    start = time.monotonic()
    workers = []
    try:
        with pytest.raises(RuntimeError, match="a step failed"):
            with batches(loader) as loaded:
                workers = list(loaded._workers)
                assert next(loaded).item() == 0
                raise RuntimeError("a step failed")
        assert time.monotonic() - start < 5
        assert len(workers) == 2 and all(not w.is_alive() and w.exitcode == -signal.SIGKILL for w in workers)
    finally:  # a survivor would hold up pytest's exit
        for w in workers:
            if w.is_alive():
                w.kill()


def test_a_loop_that_ends_normally_shuts_its_idle_workers_down():
    loader = DataLoader(list(range(4)), batch_size=1, num_workers=2, worker_init_fn=worker_init)
    with batches(loader) as loaded:
        workers = list(loaded._workers)
        assert [x.item() for x in loaded] == [0, 1, 2, 3]
    assert all(w.exitcode == 0 for w in workers)
    with batches(DataLoader(list(range(4)), batch_size=1, num_workers=0)) as loaded:  # no workers at all
        assert next(loaded).item() == 0


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux's /proc")
def test_a_worker_dies_with_its_parent():
    """A trainer killed outright (the kernel's OOM killer, SIGKILL) takes its workers with it."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the trainer: starts a worker, then dies
        try:
            worker = os.fork()
            if worker == 0:
                die_with_parent()
                time.sleep(30)
                os._exit(0)
            os.write(write, str(worker).encode())
        finally:
            os._exit(0)
    os.close(write)
    worker = int(os.read(read, 32))
    os.close(read)
    os.waitpid(child, 0)
    deadline = time.monotonic() + 10
    while not _dead(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert _dead(worker)
    finally:
        if not _dead(worker):
            os.kill(worker, signal.SIGKILL)


def _stopped_while_starting(worker_id: int) -> None:
    """A stop signal that reaches a worker before its init runs (as one sent to the process group may)."""
    os.kill(os.getpid(), signal.SIGTERM)
    worker_init(worker_id)


def test_a_stop_signal_reaching_a_starting_worker_does_not_kill_it():
    """torch's worker loop exits on SIGTERM until the init ignores it: the signal waits, blocked, till then."""
    loader = DataLoader(list(range(4)), batch_size=1, num_workers=2, worker_init_fn=_stopped_while_starting)
    with batches(loader) as loaded:
        workers = list(loaded._workers)
        assert [x.item() for x in loaded] == [0, 1, 2, 3]
    assert all(w.exitcode == 0 for w in workers)
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # the trainer's mask is back


class Unreadable(Dataset):
    """A dataset whose images cannot be read: what PatchDataset raises, from the worker."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        from datasets import DatasetError

        try:
            raise ValueError("the cause, raised first")
        except ValueError:
            raise DatasetError("none of the 2 test images can be read (the last, b.png: not an image)")  # chained


def test_a_workers_error_reaches_the_user_in_its_own_words():
    """Not torch's "Caught DatasetError in DataLoader worker process 0.": the worker's type and message."""
    from datasets import DatasetError
    from training.failures import describe

    loader = DataLoader(Unreadable(), batch_size=1, num_workers=1, worker_init_fn=worker_init)
    with pytest.raises(DatasetError) as e:
        with batches(loader) as loaded:
            next(loaded)
    assert str(e.value) == "none of the 2 test images can be read (the last, b.png: not an image)"
    loader = DataLoader([{"x": 1}], batch_size=1, num_workers=1, worker_init_fn=worker_init,
                        collate_fn=lambda items: items[0]["missing"])
    with pytest.raises(KeyError) as e:
        with batches(loader) as loaded:
            next(loaded)
    assert describe(e.value) == "KeyError: 'missing'"
