"""Run folders: which run each lambda trains into, what it starts from, and who may write it.

A sweep trains one run per lambda into ``SAVE_PATH/<type>_lambda_<lambda>/``.
A run folder is never overwritten by a new run, and only one process at a
time may train into it (:class:`RunLock`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models import TCMConfig, extract_state_dict, read_checkpoint
from utils.cli import ToolError, UsageError
from utils.files import open_own_file

from .config import TrainingConfig
from .options import DEFAULT_LAMBDA

LATEST, BEST = "checkpoint_latest.pth.tar", "checkpoint_best.pth.tar"
LOCK = ".lock"


def run_name(metric: str, lmbda: float) -> str:
    """The run folder's name: the distortion and the lambda to 6 significant digits."""
    return f"{metric}_lambda_{lmbda:g}"


def check_distinct_run_names(metric: str, lambdas: Sequence[float]) -> None:
    """Refuse lambdas so close that their runs would share a folder (names keep 6 significant digits)."""
    seen: dict[str, float] = {}
    for lam in lambdas:
        name = run_name(metric, lam)
        if name in seen:
            raise UsageError(f"--lambda {seen[name]!r} and {lam!r} would both train into {name}: "
                             "give lambdas that differ in their first 6 significant digits")
        seen[name] = lam


@dataclass(frozen=True)
class Plan:
    """What one run of the sweep starts from, and its options."""

    lmbda: float
    run_dir: Path
    config: TrainingConfig  # the command line's, or a resumed run's own (its checkpoint's where not given)
    resume: dict | None = None  # a training checkpoint to continue
    weights: dict | None = None  # a state_dict to start from (--pretrained)
    changes: tuple[str, ...] = ()  # the resumed run's options the command line changes, one line each


def describe_start(plan: Plan) -> list[str]:
    """Where a run of a resumed sweep starts, and each option the command line changes: lines naming it."""
    name = plan.run_dir.name
    ck, epochs = plan.resume, plan.config.epochs
    if ck is None:
        return [f"{name}: starts afresh" + (" from the --pretrained weights" if plan.weights is not None else "")]
    partial = ck.get("partial")
    start = int(partial["epoch"]) if partial else int(ck["epoch"]) + 1
    changes = [f"{name}: {change}" for change in plan.changes]
    if start >= epochs:
        return [f"{name}: already finished ({start} of {epochs} epochs)", *changes]
    step = f" step {int(partial['steps'])}" if partial else ""
    return [f"{name}: resumed at epoch {start}{step} (global step {int(ck.get('global_step', 0))})", *changes]


class RunLock:
    """An exclusive lock on a run folder, held for the life of the training process.

    ``fcntl.flock`` on ``RUN/.lock``: the kernel drops it when the holder
    exits, however it exits, so a lock left by a killed trainer is never in
    the way.  The file holds the holder's host and PID, for the message a
    second trainer gets.  It is opened as a file of its own
    (``utils.files.open_own_file``): a link placed there is replaced, and
    what it points to is never written.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_own_file(self.path, "r+")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise ToolError(f"{self.path.parent} is being trained by another process ({holder}): "
                                "wait for it, stop it, or choose another --save_path") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()} pid {os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock; the file stays (removing it would race)
            self.fd = None


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"


def load_training_checkpoint(path: str | os.PathLike) -> dict:
    ck = read_checkpoint(path)
    if not isinstance(ck, dict) or "optimizer" not in ck or "epoch" not in ck or "state_dict" not in ck:
        raise UsageError(f"{path} holds weights but no training state: start from it with --pretrained")
    return ck


def check_shape(config: TrainingConfig, sd: dict, source: str) -> None:
    """Explicit model-shape options must agree with the weights they are loaded into."""
    try:
        shape = TCMConfig.from_state_dict(sd)
    except ValueError as e:
        raise ToolError(f"{source}: {e}") from None
    for k, v in config.shape_overrides().items():
        if getattr(shape, k) != v:
            shown = " ".join(map(str, v)) if isinstance(v, tuple) else v
            raise UsageError(f"--{k.replace('_', '-')} {shown} disagrees with {source} ({getattr(shape, k)})")


def resumed_plan(config: TrainingConfig, given: set[str] | None, lam: float, run_dir: Path, ck: dict,
                 source: str) -> Plan:
    """A run resumed from ``ck``: the same run, so its options are the checkpoint's wherever the command line
    does not give them (``TrainingConfig.resumed_from``), and each one it changes is said.  Without ``given``
    (not knowing what the command line gave) nothing is merged."""
    args = ck.get("args")
    if given is None or not isinstance(args, dict):
        return Plan(lam, run_dir, config, resume=ck)
    run_config = config.resumed_from(args, given, source)
    run_config.check()
    return Plan(lam, run_dir, run_config, resume=ck, changes=tuple(run_config.changes_from(args, given)))


def plan_runs(config: TrainingConfig, given: set[str] | None = None) -> list[Plan]:
    """One Plan per lambda of the sweep, refusing to overwrite a run that is not being resumed.

    A resumed run, with ``--checkpoint`` or each run ``--resume`` finds, is
    the run it continues: its plan's config takes the checkpoint's options
    (patch size, epochs, schedule, seed, ...) where ``given`` (the options the
    command line gave) does not name them (:func:`resumed_plan`); ``config``
    itself is left as it was.  A run that starts afresh has ``config``.
    """
    root = Path(config.save_path) if config.save_path else None
    if config.checkpoint:
        ck = load_training_checkpoint(config.checkpoint)
        lam, metric = float(ck.get("lambda", 0.0)), ck.get("metric", config.metric)
        if config.lmbda is not None and ck.get("lambda") is not None and config.lmbda[0] != lam:
            raise UsageError(f"--lambda {config.lmbda[0]:g} differs from the checkpoint's {lam:g}: "
                             "use --pretrained to move to another lambda")
        if metric != config.metric:
            raise UsageError(f"--type {config.metric} differs from the checkpoint's {metric}")
        if config.lmbda is not None:
            lam = config.lmbda[0]
        if not lam > 0:
            raise UsageError(f"{config.checkpoint} does not record its lambda: pass --lambda")
        check_shape(config, extract_state_dict(ck), config.checkpoint)
        run_dir = root / run_name(config.metric, lam) if root else Path(config.checkpoint).resolve().parent
        latest = run_dir / LATEST
        if latest.exists() and not latest.samefile(config.checkpoint):
            raise UsageError(f"{run_dir} already holds another run: choose another --save_path")
        return [resumed_plan(config, given, lam, run_dir, ck, config.checkpoint)]

    weights = None
    if config.pretrained:
        weights = extract_state_dict(read_checkpoint(config.pretrained))
        check_shape(config, weights, config.pretrained)
    root = root or Path("runs")
    lambdas = config.lmbda or (DEFAULT_LAMBDA,)
    check_distinct_run_names(config.metric, lambdas)
    plans = []
    for lam in lambdas:
        run_dir = root / run_name(config.metric, lam)
        latest = run_dir / LATEST
        if latest.exists():
            if not config.resume:
                raise UsageError(f"{run_dir} already holds a run: resume it with --checkpoint {latest} "
                                 "(or --resume), or choose another --save_path")
            ck = load_training_checkpoint(latest)
            if ck.get("metric", config.metric) != config.metric:
                raise UsageError(f"{latest} was trained with --type {ck.get('metric')}")
            plans.append(resumed_plan(config, given, lam, run_dir, ck, str(latest)))
        else:
            plans.append(Plan(lam, run_dir, config, weights=weights))
    return plans
