"""The sweep plan: which folder each lambda trains into, what it starts from, what it refuses (training/runs.py)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from datasets import find_splits
from tests.helpers import tiny_tcm
from tests.training.helpers import STORED_ARGS, TINY, command_line, config_of
from training.runs import LATEST, LOCK, Plan, RunLock, describe_start, plan_runs, run_name
from utils.cli import ToolError, UsageError


@pytest.fixture(scope="module")
def weights() -> dict:
    """A tiny model's state dict, of the shape the TINY options give (fewer blocks and slices: quicker to load)."""
    return tiny_tcm(config=(1,) * 6, num_slices=2).state_dict()


def write_checkpoint(path: Path, state_dict: dict | None = None, **fields) -> Path:
    """A training checkpoint with what the planner reads: one epoch done, no optimizer state."""
    ck = {"epoch": 0, "partial": None, "global_step": 1, "state_dict": state_dict or {}, "optimizer": {},
          "aux_optimizer": {}, "lambda": 0.01, "metric": "mse", **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, path)
    return path


def test_run_names_keep_six_significant_digits():
    assert run_name("mse", 0.05) == "mse_lambda_0.05"
    assert run_name("ms-ssim", 0.0067) == "ms-ssim_lambda_0.0067"
    assert run_name("mse", 0.0130000001) == "mse_lambda_0.013"
    assert run_name("mse", 1e-5) == "mse_lambda_1e-05"


def test_each_lambda_trains_into_its_own_folder(tmp_path: Path):
    config = config_of("--lambda", "0.0067", "0.05", "--save_path", str(tmp_path))
    plans = plan_runs(config, set())
    assert plans == [Plan(0.0067, tmp_path / "mse_lambda_0.0067", config), Plan(0.05, tmp_path / "mse_lambda_0.05", config)]
    config = config_of("--type", "ms-ssim")
    assert plan_runs(config) == [Plan(0.013, Path("runs") / "ms-ssim_lambda_0.013", config)]  # the default lambda


def test_lambdas_that_would_share_a_folder_are_refused():
    with pytest.raises(UsageError, match=r"^--lambda 0\.013 and 0\.0130000001 would both train into mse_lambda_0\.013"):
        plan_runs(config_of("--lambda", "0.013", "0.0130000001"))


def test_a_run_is_never_overwritten_and_resume_continues_only_what_is_unfinished(tmp_path: Path):
    """One run finished, one stopped mid-epoch, one not started: one line each."""
    write_checkpoint(tmp_path / "mse_lambda_0.01" / LATEST)  # epoch 0 of 1 done
    write_checkpoint(tmp_path / "mse_lambda_0.02" / LATEST, epoch=-1, **{"lambda": 0.02},
                     partial={"epoch": 0, "steps": 1, "train": {}, "step_seconds": [0.1]})
    sweep = ("--lambda", "0.01", "0.02", "0.03", "--epochs", "1", "--save_path", str(tmp_path))
    latest = tmp_path / "mse_lambda_0.01" / LATEST
    with pytest.raises(UsageError, match=f"^{tmp_path / 'mse_lambda_0.01'} already holds a run: resume it with "
                                         f"--checkpoint {latest} \\(or --resume\\)"):
        plan_runs(config_of(*sweep))
    config = config_of(*sweep, "--resume")
    plans = plan_runs(config, set())
    assert all(p.config is config for p in plans)  # these checkpoints store no options: the command line's
    assert [p.run_dir.name for p in plans] == ["mse_lambda_0.01", "mse_lambda_0.02", "mse_lambda_0.03"]
    assert plans[0].resume["epoch"] == 0 and plans[1].resume["partial"]["steps"] == 1 and plans[2].resume is None
    lines = [describe_start(p) for p in plans]
    assert lines == [["mse_lambda_0.01: already finished (1 of 1 epochs)"],
                     ["mse_lambda_0.02: resumed at epoch 0 step 1 (global step 1)"],
                     ["mse_lambda_0.03: starts afresh"]]
    longer = dataclasses.replace(plans[0], config=config_of(*sweep, "--epochs", "3"))
    assert describe_start(longer) == ["mse_lambda_0.01: resumed at epoch 1 (global step 1)"]
    assert describe_start(Plan(0.03, plans[2].run_dir, config, weights={})) == \
        ["mse_lambda_0.03: starts afresh from the --pretrained weights"]


def test_resume_refuses_a_run_of_the_other_distortion(tmp_path: Path):
    write_checkpoint(tmp_path / "mse_lambda_0.01" / LATEST, metric="ms-ssim")
    with pytest.raises(UsageError, match="was trained with --type ms-ssim"):
        plan_runs(config_of("--lambda", "0.01", "--save_path", str(tmp_path), "--resume"))


def test_a_checkpoint_in_the_form_every_version_stored_resumes_with_its_options(tmp_path: Path, weights):
    """The checkpoint's "args" is a parsed command line's dict: its run options come back unless given."""
    ck = write_checkpoint(tmp_path / "mse_lambda_0.01" / LATEST, weights, args=dict(STORED_ARGS))
    config, given = command_line("--checkpoint", str(ck), "--epochs", "3")
    plans = plan_runs(config, given)
    resumed = plans[0].config
    assert resumed.patch_size == (128, 128) and resumed.batch_size == 1 and resumed.steps_per_epoch == 1
    assert resumed.max_test_images == 1 and resumed.lr_epoch == (1,) and resumed.seed == 5
    assert resumed.epochs == 3  # given again: the command line wins
    assert config.epochs == 3 and config.patch_size == (256, 256)  # the command line's config, unchanged
    assert len(plans) == 1 and plans[0].lmbda == 0.01 and plans[0].run_dir == ck.parent.resolve()
    assert plans[0].resume["args"] == STORED_ARGS and plans[0].weights is None
    assert plans[0].changes == ("--epochs 3 (the run's: 2)",)
    assert plan_runs(config)[0].config is config  # not told which options were given: nothing merged
    other = tmp_path / "elsewhere"
    plans = plan_runs(config_of("--checkpoint", str(ck), "--save_path", str(other)), set())
    assert plans[0].run_dir == other / "mse_lambda_0.01"


def test_options_restored_from_a_checkpoint_are_checked(tmp_path: Path, weights):
    ck = write_checkpoint(tmp_path / "run" / LATEST, weights, args={**STORED_ARGS, "lr_epoch": [0]})
    with pytest.raises(UsageError, match="^--lr_epoch 0: epochs where the rate drops must be at least 1"):
        plan_runs(*command_line("--checkpoint", str(ck)))


def test_weights_and_options_must_agree(tmp_path: Path, weights):
    release = tmp_path / "weights.pth.tar"
    torch.save(weights, release)
    with pytest.raises(UsageError, match="holds weights but no training state: start from it with --pretrained"):
        plan_runs(*command_line(*TINY, "--checkpoint", str(release)))
    with pytest.raises(UsageError, match=f"^--N 64 disagrees with {release} \\(32\\)"):
        plan_runs(*command_line(*TINY[2:], "--N", "64", "--pretrained", str(release)))
    plans = plan_runs(*command_line(*TINY, "--pretrained", str(release), "--save_path", str(tmp_path)))
    assert plans[0].weights.keys() == weights.keys() and plans[0].resume is None
    ck = write_checkpoint(tmp_path / "split" / "mse_lambda_0.01" / LATEST, weights)
    with pytest.raises(UsageError, match="--lambda 0.05 differs from the checkpoint's 0.01: use --pretrained"):
        plan_runs(*command_line(*TINY, "--checkpoint", str(ck), "--lambda", "0.05"))
    with pytest.raises(UsageError, match="--type ms-ssim differs from the checkpoint's mse"):
        plan_runs(*command_line("--checkpoint", str(ck), "--type", "ms-ssim", "--patch-size", "256", "256"))
    whole = tmp_path / "whole"
    write_checkpoint(whole / "mse_lambda_0.01" / LATEST, weights)
    with pytest.raises(UsageError, match=f"^{whole / 'mse_lambda_0.01'} already holds another run"):
        plan_runs(*command_line(*TINY, "--checkpoint", str(ck), "--save_path", str(whole)))  # would overwrite
    plans = plan_runs(*command_line("--checkpoint", str(ck), "--save_path", str(tmp_path / "split")))
    assert plans[0].run_dir == ck.parent  # its own folder: resumed, not overwritten


def test_a_checkpoint_without_its_lambda_needs_one(tmp_path: Path, weights):
    ck = write_checkpoint(tmp_path / "run" / LATEST, weights)
    bare = torch.load(ck, weights_only=True)
    del bare["lambda"]
    torch.save(bare, ck)
    with pytest.raises(UsageError, match=f"^{ck} does not record its lambda: pass --lambda"):
        plan_runs(*command_line("--checkpoint", str(ck)))
    plans = plan_runs(*command_line("--checkpoint", str(ck), "--lambda", "0.02"))
    assert plans[0].lmbda == 0.02 and plans[0].run_dir == Path(os.path.realpath(ck.parent))


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_the_lock_replaces_a_link_never_its_target(tmp_path: Path, link):
    """A .lock placed as a link to another file: the file stays as it was, the lock still excludes."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    run = tmp_path / "mse_lambda_0.01"
    run.mkdir()
    os.symlink(victim, run / LOCK) if link == "symbolic" else os.link(victim, run / LOCK)
    lock = RunLock(run).acquire()
    try:
        assert victim.read_bytes() == b"precious"
        assert not (run / LOCK).is_symlink() and (run / LOCK).read_text().startswith("host ")
        with pytest.raises(ToolError, match=f"^{run} is being trained by another process \\(host .* pid {os.getpid()}\\)"):
            RunLock(run).acquire()
    finally:
        lock.release()
    RunLock(run).acquire().release()  # released: free again


def test_resume_keeps_each_runs_options_and_says_what_the_command_line_changes(tmp_path: Path, weights):
    """--resume continues the same runs: made with 128x128 crops, batch 1, one step an epoch, each its own seed
    and rate, they go on with them, not with the defaults; what the command line gives again wins, and is said."""
    stored = dict(STORED_ARGS, save_path=str(tmp_path))
    write_checkpoint(tmp_path / "mse_lambda_0.01" / LATEST, weights, args=stored)
    write_checkpoint(tmp_path / "mse_lambda_0.02" / LATEST, weights, **{"lambda": 0.02},
                     args=dict(stored, lmbda=0.02, seed=6, learning_rate=5e-5, test_dir="held-out"))
    config, given = command_line("--lambda", "0.01", "0.02", "0.03", "--save_path", str(tmp_path), "--resume",
                                 "--epochs", "4", "--batch-size", "2", "--patch-size", "128", "128")
    plans = plan_runs(config, given)
    a, b, c = (p.config for p in plans)
    assert a.steps_per_epoch == b.steps_per_epoch == 1 and a.lr_epoch == b.lr_epoch == (1,)
    assert a.max_test_images == b.max_test_images == 1 and a.test_batch_size == 1
    assert (a.seed, a.learning_rate, a.test_dir) == (5, 1e-4, None)
    assert (b.seed, b.learning_rate, b.test_dir) == (6, 5e-5, "held-out")
    assert a.epochs == b.epochs == 4 and a.batch_size == b.batch_size == 2 and a.patch_size == (128, 128)  # given
    assert c is config  # starts afresh: the command line's options
    assert plans[0].changes == plans[1].changes == ("--epochs 4 (the run's: 2)", "--batch-size 2 (the run's: 1)")
    assert describe_start(plans[1]) == ["mse_lambda_0.02: resumed at epoch 1 (global step 1)",
                                        "mse_lambda_0.02: --epochs 4 (the run's: 2)",
                                        "mse_lambda_0.02: --batch-size 2 (the run's: 1)"]
    assert config.patch_size == (128, 128) and config.seed == 0 and config.steps_per_epoch == 0  # left as it was


def test_a_resumed_run_finds_its_own_images(tmp_path: Path, weights):
    """A run made with --batch-size 1 on four images resumes without --batch-size: not refused with the
    default 8, and its plain folder is split with its own seed."""
    from training.sweep import sweep_data

    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (60 * i, 0, 0)).save(folder / f"{i}.png")
    stored = dict(STORED_ARGS, dataset=str(folder), test_fraction=0.5)
    write_checkpoint(tmp_path / "mse_lambda_0.01" / LATEST, weights, args=stored)
    write_checkpoint(tmp_path / "mse_lambda_0.02" / LATEST, weights, **{"lambda": 0.02}, args=dict(stored, seed=7))
    config, given = command_line("--lambda", "0.01", "0.02", "--save_path", str(tmp_path), "--resume")
    config = dataclasses.replace(config, dataset=str(folder))
    (train_a, test_a, _, _), (train_b, test_b, _, _) = sweep_data(plan_runs(config, given))
    assert len(train_a) == len(test_a) == 2 and sorted(train_a + test_a) == sorted(folder.iterdir())
    split = {seed: tuple(find_splits(folder, 0.5, seed)[1]) for seed in (5, 7)}
    assert (test_a, test_b) == (split[5], split[7]) and split[5] != split[7]  # each run's own held-out images
    with pytest.raises(UsageError, match="^2 training images, fewer than --batch-size 8 of mse_lambda_0.01$"):
        sweep_data(plan_runs(config, given | {"batch_size"}))


def test_options_stored_in_a_form_they_do_not_take_are_refused_in_one_line(tmp_path: Path, weights):
    """A damaged or crafted checkpoint's options: one line naming the option, no traceback."""
    for name, value in (("patch_size", "big"), ("patch_size", [128, 128, 128]), ("epochs", 2.5),
                        ("learning_rate", "fast"), ("lr_epoch", []), ("seed", True), ("test_dir", 7)):
        ck = write_checkpoint(tmp_path / name / LATEST, weights, args=dict(STORED_ARGS, **{name: value}))
        with pytest.raises(UsageError) as e:
            plan_runs(*command_line("--checkpoint", str(ck)))
        flag = "--" + name.replace("_", "-")
        assert str(e.value) in (f"{ck} stores {flag} as {value!r}, which is not a value of that option: give {flag}",
                                "--patch-size takes two sides, not 3"), str(e.value)
