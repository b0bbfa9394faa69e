"""train.py's options: the default lambda, which of them shape the model or come back on resume, which were given.

The parser itself lives in ``train.py``; the options it parses become a
``training.config.TrainingConfig``.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

DEFAULT_LAMBDA = 0.013
#: Model-shape options (``--N``, ``--hyper-channels`` …) and the TCMConfig fields they set.
SHAPE_OPTIONS = ("N", "M", "num_slices", "max_support_slices", "hyper_channels", "atten_dim", "entropy_hidden")

#: What a resumed run (``--checkpoint``, or each run of ``--resume``) takes from its checkpoint unless the
#: command line gives it again: every option that shapes the run's result or what it keeps.  Not restored:
#: how this process computes (``--cuda``, ``--amp``, ``--tf32``, ``-n``, ``--no-progress``), what this
#: command asks (``--max-minutes``, ``--save``, ``--save_path``), and ``-d``, which is always given.
RESUMED_OPTIONS = ("epochs", "learning_rate", "batch_size", "test_batch_size", "aux_learning_rate", "patch_size",
                   "clip_max_norm", "lr_epoch", "steps_per_epoch", "max_test_images", "test_fraction", "seed",
                   "save_every", "test_dir", "image_every")
#: The options whose change on resume is said, one line each: the restored ones and the dataset.
COMPARED_ON_RESUME = (*RESUMED_OPTIONS, "dataset")


def spelled(value: Any) -> str:
    """A value as the command line spells it: ``45 48``, ``on``, ``0.0001``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


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
