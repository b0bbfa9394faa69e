"""train.py's command line as the tool parses it, and what a checkpoint stores of it, for the unit tests."""

from __future__ import annotations

from typing import Any

import train
from training.config import TrainingConfig
from training.options import given_options

#: The tiny model of the CLI tests (tests/test_train_cli.py).
TINY = ["--N", "32", "--M", "80", "--hyper-channels", "32", "--atten-dim", "32", "--entropy-hidden", "32", "32"]

#: The "args" of a checkpoint written by ``train.py -d data TINY --patch-size 128 128 --batch-size 1
#: --test-batch-size 1 -n 0 --steps-per-epoch 1 --max-test-images 1 --no-progress --save_path runs
#: --epochs 2 --lambda 0.01 --lr_epoch 1 --seed 5``, as every version so far stored it: the parsed
#: argparse.Namespace's dict, lists for tuples, the run's own lambda as a number.
STORED_ARGS: dict[str, Any] = {
    "dataset": "data", "epochs": 2, "learning_rate": 0.0001, "num_workers": 0, "lmbda": 0.01, "metric": "mse",
    "batch_size": 1, "test_batch_size": 1, "aux_learning_rate": 0.001, "patch_size": [128, 128], "cuda": False,
    "amp": None, "tf32": True, "save": True, "save_path": "runs", "save_every": 5, "seed": 5, "clip_max_norm": 1.0,
    "lr_epoch": [1], "checkpoint": None, "pretrained": None, "resume": False, "steps_per_epoch": 1,
    "max_minutes": None, "test_dir": None, "max_test_images": 1, "test_fraction": 0.1, "no_progress": True,
    "image_every": 1, "N": 32, "M": 80, "num_slices": None, "max_support_slices": None, "hyper_channels": 32,
    "atten_dim": 32, "entropy_hidden": [32, 32],
}
#: The command line that stored STORED_ARGS (after ``-d data``).
STORED_ARGV = [*TINY, "--patch-size", "128", "128", "--batch-size", "1", "--test-batch-size", "1", "-n", "0",
               "--steps-per-epoch", "1", "--max-test-images", "1", "--no-progress", "--save_path", "runs",
               "--epochs", "2", "--lambda", "0.01", "--lr_epoch", "1", "--seed", "5"]


def command_line(*argv: str) -> tuple[TrainingConfig, set[str]]:
    """The config of ``train.py -d data ARGV`` and the options it gives, as train.py makes them."""
    parser = train.build_parser()
    words = ["-d", "data", *argv]
    return TrainingConfig.from_args(parser.parse_args(words)), given_options(parser, words)


def config_of(*argv: str) -> TrainingConfig:
    """The config of ``train.py -d data ARGV``."""
    return command_line(*argv)[0]
