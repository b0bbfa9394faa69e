"""train.py's options: their checks, the model shape they give, and what a resumed run keeps.

The parser itself lives in ``train.py``; what is here works on the parsed
``argparse.Namespace`` so that tests and other tools can use it too.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Sequence

from models import TCMConfig
from utils.cli import UsageError
from utils.padding import PAD_MULTIPLE

DEFAULT_LAMBDA = 0.013
#: Model-shape options (``--N``, ``--hyper-channels`` …) and the TCMConfig fields they set.
SHAPE_OPTIONS = ("N", "M", "num_slices", "max_support_slices", "hyper_channels", "atten_dim", "entropy_hidden")

#: What a resumed run takes from its checkpoint unless the command line gives it again:
#: without them a bare ``--checkpoint`` would go on with other patches, epochs or held-out images.
RESUMED_OPTIONS = ("epochs", "learning_rate", "batch_size", "test_batch_size", "aux_learning_rate", "patch_size",
                   "clip_max_norm", "lr_epoch", "steps_per_epoch", "max_test_images", "test_fraction", "seed",
                   "save_every", "test_dir")


def shape_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model-shape options given on the command line."""
    out = {k: getattr(args, k) for k in SHAPE_OPTIONS if getattr(args, k, None) is not None}
    if "entropy_hidden" in out:
        out["entropy_hidden"] = tuple(out["entropy_hidden"])
    return out


def model_config(args: argparse.Namespace) -> TCMConfig:
    """The shape of a new model: the published TCM-Large with the command line's changes."""
    try:
        return TCMConfig(**shape_overrides(args))
    except ValueError as e:
        raise UsageError(f"cannot build the model: {_as_option(str(e))}") from None


def _as_option(message: str) -> str:
    """``N=48 must …`` -> ``--N 48 must …``: the config's words in the command line's terms."""
    for name in SHAPE_OPTIONS:
        prefix = f"{name}="
        if message.startswith(prefix):
            return f"--{name.replace('_', '-')} {message[len(prefix):].split(' ', 1)[0]} " + message.split(" ", 1)[1]
    return message


def check_options(args: argparse.Namespace) -> None:
    """Refuse, in one line, options that cannot work together (exit status 2)."""
    h, w = args.patch_size
    if h <= 0 or w <= 0 or h % PAD_MULTIPLE or w % PAD_MULTIPLE:
        raise UsageError(f"--patch-size {h} {w}: sides must be positive multiples of {PAD_MULTIPLE}")
    if args.metric == "ms-ssim" and min(h, w) <= 160:
        raise UsageError("--type ms-ssim needs patches larger than 160 pixels (5 MS-SSIM scales)")
    for name in ("epochs", "batch_size", "test_batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("num_workers", "steps_per_epoch", "max_test_images", "save_every", "image_every"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative")
    for flag, value in (("--learning-rate", args.learning_rate), ("--aux-learning-rate", args.aux_learning_rate)):
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{flag} {value:g} must be a positive number")
    if not (args.clip_max_norm >= 0 and math.isfinite(args.clip_max_norm)):
        raise UsageError("--clip_max_norm must be 0 (off) or positive")
    if any(e < 1 for e in args.lr_epoch):
        raise UsageError(f"--lr_epoch {' '.join(map(str, args.lr_epoch))}: epochs where the rate drops "
                         "must be at least 1")
    if args.lmbda is not None and any(not (lam > 0 and math.isfinite(lam)) for lam in args.lmbda):
        raise UsageError("--lambda values must be positive")
    if args.lmbda is not None and len(set(args.lmbda)) != len(args.lmbda):
        raise UsageError("--lambda lists a value twice")
    if args.checkpoint and args.pretrained:
        raise UsageError("--checkpoint resumes a run and --pretrained starts one: give only one")
    if args.checkpoint and args.lmbda is not None and len(args.lmbda) > 1:
        raise UsageError("--checkpoint resumes one run: give at most one --lambda (or use --resume for a sweep)")
    if args.amp and not args.cuda:
        raise UsageError("--amp needs --cuda")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise UsageError("--max-minutes must be positive")
    model_config(args)  # the shape options


def plain_options(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The options as str/int/float/bool/None/list only (loadable with weights_only=True)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        return str(v)

    return {k: plain(v) for k, v in {**vars(args), **extra}.items()}


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The options given on the command line, as opposed to left at their defaults.

    argparse has no public way to tell them apart: a copy of the parser whose
    defaults are all SUPPRESS parses the same words, and what it sets was given.
    """
    import copy

    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    given, _ = probe.parse_known_args(argv)
    return set(vars(given))


def restore_run_options(args: argparse.Namespace, saved: dict[str, Any], given: set[str]) -> None:
    """Take the resumed run's options where the command line does not give them again."""
    for k in RESUMED_OPTIONS:
        if k not in given and k in saved and saved[k] is not None:
            value = saved[k]
            setattr(args, k, tuple(value) if k == "patch_size" else value)
