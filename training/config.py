"""The options of a training sweep as one frozen value, built from ``train.py``'s command line.

A :class:`TrainingConfig` is never changed after it is built: a resumed run's
options are a new config (:meth:`TrainingConfig.resumed_from`), per-run values
come from ``dataclasses.replace``.  Checkpoints store it in a plain form
(:meth:`TrainingConfig.to_stored`, the same dict older versions stored from the
parsed command line) that a later run reads back when it resumes.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from models import TCMConfig
from utils.cli import UsageError
from utils.padding import PAD_MULTIPLE

from .options import COMPARED_ON_RESUME, RESUMED_OPTIONS, SHAPE_OPTIONS, spelled


@dataclass(frozen=True)
class TrainingConfig:
    """Every option of ``train.py``, under the names its parser gives them; lists held as tuples.

    The fields are those of the parser, in its order; there are no defaults
    here because the command line is where they are set (``train.py --help``).
    """

    dataset: str
    epochs: int
    learning_rate: float
    num_workers: int
    lmbda: tuple[float, ...] | None  # None: the default lambda, or a resumed checkpoint's
    metric: str  # "mse" or "ms-ssim"
    batch_size: int
    test_batch_size: int
    aux_learning_rate: float
    patch_size: tuple[int, int]
    cuda: bool
    amp: str | None  # "fp16", "bf16" or None
    tf32: bool
    save: bool
    save_path: str | None
    save_every: int
    seed: int
    clip_max_norm: float
    lr_epoch: tuple[int, ...]
    checkpoint: str | None
    pretrained: str | None
    resume: bool
    steps_per_epoch: int
    max_minutes: float | None
    test_dir: str | None
    max_test_images: int
    test_fraction: float
    no_progress: bool
    image_every: int
    # The model's shape: None is the published TCM-Large's value.
    N: int | None
    M: int | None
    num_slices: int | None
    max_support_slices: int | None
    hyper_channels: int | None
    atten_dim: int | None
    entropy_hidden: tuple[int, int] | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TrainingConfig":
        """The config of a parsed ``train.py`` command line (which must set every field, and nothing else)."""
        values = vars(args)
        names = [f.name for f in fields(cls)]
        missing, unknown = set(names) - set(values), set(values) - set(names)
        if missing or unknown:
            raise TypeError(f"the options do not match TrainingConfig: missing {sorted(missing)}, "
                            f"unknown {sorted(unknown)}")
        return cls(**{name: _frozen(values[name]) for name in names})

    def resumed_from(self, stored: Mapping[str, Any], given: Collection[str],
                     source: str = "the checkpoint") -> "TrainingConfig":
        """This config with a resumed run's options: the checkpoint's, unless the command line gave them.

        ``stored`` is a checkpoint's ``"args"``; ``given`` names the options the
        command line gave (``options.given_options``).  Only RESUMED_OPTIONS
        come back, and an option stored as None keeps this config's value; one
        stored in a form the option does not take (a damaged or crafted
        checkpoint) is refused in one line naming ``source``.  A new ``-lr`` or
        ``--lr_epoch`` is given, so it stays: the loop then applies it to the
        restored schedule.
        """
        restored = {}
        for name in RESUMED_OPTIONS:
            if name in given or stored.get(name) is None:
                continue
            value = _frozen(stored[name])
            if not _same_form(value, getattr(self, name)):
                raise UsageError(f"{source} stores {_flag(name)} as {stored[name]!r}, which is not a value of that "
                                 f"option: give {_flag(name)}")
            restored[name] = float(value) if isinstance(getattr(self, name), float) else value
        return replace(self, **restored)

    def changes_from(self, stored: Mapping[str, Any], given: Collection[str]) -> list[str]:
        """What the command line changes of a resumed run's stored options: ``--patch-size 256 256 (the run's:
        128 128)``, one line each (COMPARED_ON_RESUME given with another value than the stored one)."""
        lines = []
        for name in COMPARED_ON_RESUME:
            old, new = _frozen(stored.get(name)), getattr(self, name)
            if name in given and old is not None and old != new:
                lines.append(f"{_flag(name)} {spelled(new)} (the run's: {spelled(old)})")
        return lines

    def to_stored(self, **overrides: Any) -> dict[str, Any]:
        """The options as str/int/float/bool/None/list only (loadable with ``weights_only=True``).

        ``overrides`` replace values in the stored form only: a run stores its
        own lambda (a number) where the config holds the sweep's list.
        """
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: _plain(value) for name, value in {**values, **overrides}.items()}

    def shape_overrides(self) -> dict[str, Any]:
        """The model-shape options the command line gave (the others are None)."""
        return {name: getattr(self, name) for name in SHAPE_OPTIONS if getattr(self, name) is not None}

    def model_config(self) -> TCMConfig:
        """The shape of a new model: the published TCM-Large with the command line's changes."""
        try:
            return TCMConfig(**self.shape_overrides())
        except ValueError as e:
            raise UsageError(f"cannot build the model: {_as_option(str(e))}") from None

    def check(self) -> None:
        """Refuse, in one line, options that cannot work together (exit status 2)."""
        if len(self.patch_size) != 2:
            raise UsageError(f"--patch-size takes two sides, not {len(self.patch_size)}")
        h, w = self.patch_size
        if h <= 0 or w <= 0 or h % PAD_MULTIPLE or w % PAD_MULTIPLE:
            raise UsageError(f"--patch-size {h} {w}: sides must be positive multiples of {PAD_MULTIPLE}")
        if self.metric == "ms-ssim" and min(h, w) <= 160:
            raise UsageError("--type ms-ssim needs patches larger than 160 pixels (5 MS-SSIM scales)")
        for name in ("epochs", "batch_size", "test_batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("num_workers", "steps_per_epoch", "max_test_images", "save_every", "image_every"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must not be negative")
        if not 0 <= self.seed < 2**32:  # numpy's seeds; torch's generators take seed * 100003 + epoch
            raise UsageError(f"--seed {self.seed}: a seed is a number in 0..{2**32 - 1}")
        for flag, value in (("--learning-rate", self.learning_rate), ("--aux-learning-rate", self.aux_learning_rate)):
            if not (value > 0 and math.isfinite(value)):
                raise UsageError(f"{flag} {value:g} must be a positive number")
        if not (self.clip_max_norm >= 0 and math.isfinite(self.clip_max_norm)):
            raise UsageError("--clip_max_norm must be 0 (off) or positive")
        if any(e < 1 for e in self.lr_epoch):
            raise UsageError(f"--lr_epoch {' '.join(map(str, self.lr_epoch))}: epochs where the rate drops "
                             "must be at least 1")
        if self.lmbda is not None and any(not (lam > 0 and math.isfinite(lam)) for lam in self.lmbda):
            raise UsageError("--lambda values must be positive")
        if self.lmbda is not None and len(set(self.lmbda)) != len(self.lmbda):
            raise UsageError("--lambda lists a value twice")
        if self.checkpoint and self.pretrained:
            raise UsageError("--checkpoint resumes a run and --pretrained starts one: give only one")
        if self.checkpoint and self.lmbda is not None and len(self.lmbda) > 1:
            raise UsageError("--checkpoint resumes one run: give at most one --lambda (or use --resume for a sweep)")
        if self.amp and not self.cuda:
            raise UsageError("--amp needs --cuda")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise UsageError("--max-minutes must be positive")
        self.model_config()  # the shape options


def _frozen(value: Any) -> Any:
    """Lists (argparse's ``nargs``, a checkpoint's stored values) as tuples, so that a config is hashable."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _same_form(value: Any, like: Any) -> bool:
    """Whether a stored option's value has the form of the command line's ``like`` (None: a folder's name)."""
    if like is None or isinstance(like, str):
        return isinstance(value, str)
    if isinstance(like, bool):
        return isinstance(value, bool)
    if isinstance(like, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(like, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(like, tuple):
        return isinstance(value, tuple) and len(value) > 0 and all(_same_form(v, like[0]) for v in value)
    return False


def _flag(name: str) -> str:
    """The option of a config field as the command line spells it: ``patch_size`` -> ``--patch-size``."""
    return f"--{name.replace('_', '-')}"


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _as_option(message: str) -> str:
    """``N=48 must …`` -> ``--N 48 must …``: the config's words in the command line's terms."""
    for name in SHAPE_OPTIONS:
        prefix = f"{name}="
        if message.startswith(prefix):
            return f"--{name.replace('_', '-')} {message[len(prefix):].split(' ', 1)[0]} " + message.split(" ", 1)[1]
    return message
