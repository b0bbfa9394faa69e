"""The training config: built from the command line, stored in checkpoints, merged on resume (training/config.py)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

import train
from tests.training.helpers import STORED_ARGS, STORED_ARGV, TINY, command_line, config_of
from training.config import TrainingConfig
from training.options import RESUMED_OPTIONS
from utils.cli import UsageError


def test_the_config_holds_every_option_of_the_command_line_in_the_parsers_order():
    args = train.build_parser().parse_args(["-d", "data", "--patch-size", "128", "256", "--lr_epoch", "3", "4"])
    config = TrainingConfig.from_args(args)
    assert [f.name for f in dataclasses.fields(config)] == list(vars(args))
    assert config.patch_size == (128, 256) and config.lr_epoch == (3, 4)  # nargs lists held as tuples
    assert config.lmbda is None and config.N is None and config.learning_rate == 1e-4
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]
    assert hash(config) == hash(TrainingConfig.from_args(args))


def test_a_namespace_that_does_not_match_the_config_is_refused():
    args = train.build_parser().parse_args(["-d", "data"])
    with pytest.raises(TypeError, match=r"unknown \['extra'\]"):
        TrainingConfig.from_args(argparse.Namespace(**vars(args), extra=True))
    del args.seed
    with pytest.raises(TypeError, match=r"missing \['seed'\]"):
        TrainingConfig.from_args(args)


def test_checkpoints_store_the_options_as_they_always_did():
    """The plain dict of the parsed command line, the run's lambda as a number: old and new read each other."""
    config = config_of(*STORED_ARGV)
    stored = config.to_stored(lmbda=0.01)
    assert stored == STORED_ARGS and list(stored) == list(STORED_ARGS)

    def plain(v) -> bool:
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (str, int, float, bool))

    assert all(plain(v) for v in config_of().to_stored().values())
    assert config.to_stored()["lmbda"] == [0.01]  # the sweep's list, where no run overrides it


def test_a_bare_resume_takes_the_run_options_from_the_checkpoint():
    """`--checkpoint` alone goes on with the run's patches, steps, epochs and seed, not the defaults."""
    config, given = command_line("--checkpoint", "ck.pth.tar", "--epochs", "3")
    resumed = config.resumed_from(STORED_ARGS, given)
    assert resumed.patch_size == (128, 128) and resumed.batch_size == 1 and resumed.steps_per_epoch == 1
    assert resumed.max_test_images == 1 and resumed.lr_epoch == (1,) and resumed.seed == 5
    assert resumed.epochs == 3  # given again: the command line wins
    assert config.patch_size == (256, 256) and config.seed == 0  # the command line's config is left as it was


def test_a_new_learning_rate_and_milestones_given_on_resume_win():
    config, given = command_line("--checkpoint", "ck.pth.tar", "-lr", "5e-5", "--lr_epoch", "2",
                                 "--aux-learning-rate", "2e-3")
    resumed = config.resumed_from(STORED_ARGS, given)
    assert resumed.learning_rate == 5e-5 and resumed.lr_epoch == (2,) and resumed.aux_learning_rate == 2e-3
    assert resumed.epochs == 2 and resumed.seed == 5  # the rest from the checkpoint
    stored = resumed.to_stored(lmbda=0.01)
    assert stored["learning_rate"] == 5e-5 and stored["lr_epoch"] == [2]  # what the resumed run used
    # a given value equal to the default still wins over the checkpoint's
    config, given = command_line("--checkpoint", "ck.pth.tar", "--lr_epoch", "45", "48")
    assert config.resumed_from(STORED_ARGS, given).lr_epoch == (45, 48)


def test_only_the_resumed_options_come_back_and_missing_or_empty_ones_keep_the_command_lines():
    config, given = command_line("--checkpoint", "ck.pth.tar", "-n", "1")
    old = {k: v for k, v in STORED_ARGS.items() if k not in ("test_fraction", "save_every")}  # an older run's
    old.update(epochs=None, dataset="elsewhere", cuda=True, N=64, no_progress=False, extra=True)
    resumed = config.resumed_from(old, given)
    assert resumed.test_fraction == 0.1 and resumed.save_every == 5 and resumed.epochs == 50
    assert (resumed.dataset, resumed.cuda, resumed.N, resumed.no_progress, resumed.num_workers) == (
        "data", False, None, False, 1)
    assert resumed.batch_size == 1 and resumed.patch_size == (128, 128)
    everything_given = config.resumed_from(STORED_ARGS, set(RESUMED_OPTIONS))
    assert everything_given == config


def test_the_model_shape_of_the_command_line():
    config = config_of(*TINY)
    assert config.shape_overrides() == {"N": 32, "M": 80, "hyper_channels": 32, "atten_dim": 32,
                                        "entropy_hidden": (32, 32)}
    shape = config.model_config()
    assert (shape.N, shape.M, shape.num_slices, shape.entropy_hidden) == (32, 80, 5, (32, 32))
    assert config_of().shape_overrides() == {}
    with pytest.raises(UsageError, match=r"^cannot build the model: --N 48 .*multiple of 32"):
        config_of("--N", "48").model_config()


@pytest.mark.parametrize("argv, message", [
    (["--patch-size", "100", "128"], "--patch-size 100 128: sides must be positive multiples of 128"),
    (["--type", "ms-ssim", "--patch-size", "128", "128"], "--type ms-ssim needs patches larger than 160 pixels"),
    (["--test-batch-size", "0"], "--test-batch-size must be at least 1"),
    (["--save-every", "-1"], "--save-every must not be negative"),
    (["--clip_max_norm", "nan"], "--clip_max_norm must be 0 (off) or positive"),
    (["--lambda", "0.01", "0.01"], "--lambda lists a value twice"),
    (["--checkpoint", "a", "--pretrained", "b"], "--checkpoint resumes a run and --pretrained starts one"),
    (["--checkpoint", "a", "--lambda", "0.01", "0.02"], "--checkpoint resumes one run: give at most one --lambda"),
    (["--N", "48"], "cannot build the model: --N 48"),
    (["--seed", "-1"], "--seed -1: a seed is a number in 0..4294967295"),
    (["--seed", str(2**63)], f"--seed {2**63}: a seed is a number in 0..4294967295"),  # overflowed torch at epoch 0
])
def test_options_that_cannot_work_together_are_refused(argv, message):
    config = config_of(*argv)
    with pytest.raises(UsageError) as e:
        config.check()
    assert str(e.value).startswith(message)
    config_of().check()  # the defaults are fine
