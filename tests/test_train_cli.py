"""train.py: learning, exact resume, sweeps, bad data, divergence, torchrun, checkpoints.

Runs use the tiny model, 128x128 crops, batch 1 and one step per epoch so that
the whole file stays within a couple of minutes on two CPU cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train
from datasets import PatchDataset, find_splits
from models import load_model
from tests.helpers import BSDS, ROOT, require
from training import BEST, LATEST, Dist, Plan, Trainer, TrainingConfig, train_step

TINY = ["--N", "32", "--M", "80", "--hyper-channels", "32", "--atten-dim", "32", "--entropy-hidden", "32", "32"]


def cli(data: Path, save: Path, *extra: str) -> list[str]:
    return ["-d", str(data), *TINY, "--patch-size", "128", "128", "--batch-size", "1", "--test-batch-size", "1",
            "-n", "0", "--steps-per-epoch", "1", "--max-test-images", "1", "--no-progress",
            "--save_path", str(save), *extra]


def write_images(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = (100, 150) if i == 0 else (144, 176)  # the first is smaller than the patch
        base = rng.random((1, 1, 3)) * 0.6
        ramp = np.linspace(0, 0.4, w)[None, :, None]
        a = np.clip(base + ramp + 0.05 * rng.standard_normal((h, w, 3)), 0, 1)
        Image.fromarray((a * 255).astype(np.uint8)).save(folder / f"img{i}.png")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_images(root / "train", 4, 0)
    write_images(root / "test", 1, 1)
    return root


@pytest.fixture(scope="module")
def runs(data: Path, tmp_path_factory) -> dict[str, Path]:
    """Two epochs in one go, and one epoch then a resumed second."""
    whole, split = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("split")
    assert train.main(cli(data, whole, "--epochs", "2", "--lambda", "0.01")) == 0
    assert train.main(cli(data, split, "--epochs", "1", "--lambda", "0.01")) == 0
    first = torch.load(split / "mse_lambda_0.01" / LATEST, weights_only=True)
    ck = split / "mse_lambda_0.01" / LATEST
    assert train.main(cli(data, split, "--epochs", "2", "--checkpoint", str(ck))) == 0
    return {"whole": whole / "mse_lambda_0.01", "split": split / "mse_lambda_0.01", "first_epoch": first}


@pytest.mark.slow
def test_few_steps_of_tcm_s_lower_the_loss_on_a_fixed_batch(tmp_path: Path):
    train_paths, test_paths, _ = find_splits(require(BSDS))
    args = train.build_parser().parse_args(
        ["-d", str(BSDS), "--N", "64", "--patch-size", "128", "128", "--batch-size", "1", "--no-save"])
    trainer = Trainer(Plan(0.013, tmp_path / "run", TrainingConfig.from_args(args)), Dist(), train_paths, test_paths)
    assert trainer.net.N == 64
    x = PatchDataset(train_paths[:1], (128, 128), train=True)[0].unsqueeze(0)

    def loss() -> float:
        trainer.net.eval()
        with torch.no_grad():
            value = trainer.criterion(trainer.net(x), x)["loss"].item()
        trainer.net.train()
        return value

    before = loss()
    for _ in range(2):
        train_step(trainer.opt, x)
    trainer.close()
    assert loss() < 0.8 * before


@pytest.mark.slow
def test_steps_per_epoch_beyond_the_training_set_says_what_an_epoch_is(data: Path, tmp_path: Path, capsys):
    """Four training images at batch 2 make two steps an epoch, whatever --steps-per-epoch asks."""
    argv = cli(data, tmp_path, "--epochs", "1", "--no-save")
    argv[argv.index("--steps-per-epoch") + 1] = "100"
    argv[argv.index("--batch-size") + 1] = "2"
    assert train.main(argv) == 0
    assert "--steps-per-epoch 100 is more than the 2 batches of the training set: an epoch is 2 steps" \
        in capsys.readouterr().out


@pytest.mark.slow
def test_resume_continues_exactly_like_an_uninterrupted_run(runs):
    a = torch.load(runs["whole"] / LATEST, weights_only=True)
    b = torch.load(runs["split"] / LATEST, weights_only=True)
    assert a["epoch"] == b["epoch"] == 1 and a["global_step"] == b["global_step"] == 2

    def figures(ck):  # everything but the wall-clock speed
        return [{k: v for k, v in h.items() if k not in ("train_images_per_s", "train_step_seconds")}
                for h in ck["history"]]

    assert figures(a) == figures(b)
    assert a["history"][1]["train_loss"] != a["history"][0]["train_loss"]
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    for name in ("optimizer", "aux_optimizer"):
        for i, s in a[name]["state"].items():
            assert all(torch.equal(s[k], b[name]["state"][i][k]) for k in s)
    assert a["lr_scheduler"] == b["lr_scheduler"]
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    # the first epoch's state really was what the second one started from
    assert runs["first_epoch"]["history"] == b["history"][:1]
    assert all(h["train_step_seconds"] > 0 for h in b["history"])


@pytest.mark.slow
def test_checkpoints_are_plain_and_load_everywhere(runs):
    run = runs["whole"]
    ck = torch.load(run / LATEST, weights_only=True)
    assert {"state_dict", "optimizer", "aux_optimizer", "lr_scheduler", "epoch", "loss", "args"} <= set(ck)
    assert ck["lambda"] == 0.01 and ck["metric"] == "mse" and ck["model_config"]["N"] == 32

    def plain(v) -> bool:
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (str, int, float, bool))

    assert all(plain(v) for v in ck["args"].values())
    best = torch.load(run / BEST, weights_only=True)
    assert best["epoch"] == ck["best"]["epoch"] and best["loss"] == best["best_loss"]
    net = load_model(run / BEST)
    assert net.N == 32 and not net.training
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in lines] == [0, 1] and lines[1]["test_bpp"] > 0
    assert list(run.glob("events.out.tfevents.*"))
    assert not list(run.glob(".*tmp*"))


@pytest.mark.slow
def test_tensorboard_has_step_and_epoch_scalars(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(runs["split"]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train_step/loss", "train_step/bpp", "train_step/psnr", "train_step/aux", "train_step/lr",
            "test/loss", "test/psnr", "train/images_per_s"} <= tags
    assert [e.step for e in acc.Scalars("train_step/loss")] == [1, 2]
    assert [e.value for e in acc.Scalars("train/epoch")] == [0, 1]
    images = set(acc.Tags()["images"])
    assert {"test_image/original", "test_image/reconstruction", "test_image/bits_per_pixel",
            "test_image/rd_by_epoch"} <= images
    assert [e.step for e in acc.Images("test_image/reconstruction")] == [1, 2]  # every epoch (--image-every 1)


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(runs, tmp_path: Path, data: Path, capsys):
    ck = torch.load(runs["split"] / LATEST, weights_only=True)
    for group in ck["optimizer"]["param_groups"]:
        group["lr"] = 1e9  # guaranteed to blow the weights up
    run = tmp_path / "mse_lambda_0.01"
    run.mkdir()
    torch.save(ck, run / LATEST)
    before = (run / LATEST).read_bytes()
    argv = cli(data, tmp_path, "--epochs", "4", "--checkpoint", str(run / LATEST))
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    assert "loss is not finite" in err and "last good checkpoint" in err
    assert (run / LATEST).read_bytes() == before
    assert not (run / BEST).exists()


@pytest.mark.slow
def test_sweep_on_a_plain_folder_with_a_corrupt_image(tmp_path: Path, capsys):
    folder = tmp_path / "photos"
    write_images(folder, 5, 2)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    save = tmp_path / "runs"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train.main(cli(folder, save, "--lambda", "0.0067", "0.05", "--epochs", "1")) == 0
    assert len([w for w in caught if "corrupt.png" in str(w.message)]) == 1
    out = capsys.readouterr().out
    assert sorted(p.name for p in save.iterdir() if p.is_dir()) == ["mse_lambda_0.0067", "mse_lambda_0.05"]
    for run in ("mse_lambda_0.0067", "mse_lambda_0.05"):
        ck = torch.load(save / run / BEST, weights_only=True)
        assert ck["lambda"] == float(run.split("_")[-1])
    table = (save / "sweep_summary.txt").read_text()
    assert table.splitlines()[0].split()[:2] == ["lambda", "best"] and len(table.splitlines()) == 3
    assert table.strip() in out and "plain layout" in out
    # a second launch refuses to overwrite, and --resume continues only what is unfinished
    assert train.main(cli(folder, save, "--lambda", "0.05", "--epochs", "1")) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert train.main(cli(folder, save, "--lambda", "0.05", "--epochs", "2", "--resume")) == 0
    assert "mse_lambda_0.05: resumed at epoch 1 (global step 1)" in capsys.readouterr().out.splitlines()
    assert torch.load(save / "mse_lambda_0.05" / LATEST, weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_resume_is_the_same_run_with_the_options_it_was_made_with(data: Path, tmp_path: Path, capsys):
    """A bare --resume goes on with the run's crops, batch, steps and schedule (the defaults would need 8
    training images and a 256x256 crop); an option given again is said."""
    assert train.main(cli(data, tmp_path, "--epochs", "1", "--lambda", "0.01", "-lr", "5e-5", "--lr_epoch", "1")) == 0
    capsys.readouterr()
    assert train.main(["-d", str(data), "--save_path", str(tmp_path), "--lambda", "0.01", "--resume", "-n", "0",
                       "--no-progress", "--epochs", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:3] == ["mse_lambda_0.01: resumed at epoch 1 (global step 1)", "mse_lambda_0.01: --epochs 2 (the run's: 1)"]
    ck = torch.load(tmp_path / "mse_lambda_0.01" / LATEST, weights_only=True)
    assert ck["global_step"] == 2 and ck["history"][1]["train_lr"] == pytest.approx(5e-6)
    stored = {k: ck["args"][k] for k in ("patch_size", "batch_size", "steps_per_epoch", "max_test_images", "epochs")}
    assert stored == {"patch_size": [128, 128], "batch_size": 1, "steps_per_epoch": 1, "max_test_images": 1, "epochs": 2}


@pytest.mark.slow
def test_pretrained_starts_a_new_run_from_weights_only(runs, tmp_path: Path, data: Path):
    src = runs["whole"] / LATEST
    assert train.main(cli(data, tmp_path, "--pretrained", str(src), "--lambda", "0.02", "--epochs", "1")) == 0
    ck = torch.load(tmp_path / "mse_lambda_0.02" / LATEST, weights_only=True)
    assert ck["epoch"] == 0 and ck["global_step"] == 1 and len(ck["history"]) == 1
    steps = [int(s["step"]) for s in ck["optimizer"]["state"].values()]
    assert set(steps) == {1}  # fresh optimizer, not the source's (2 steps)


@pytest.mark.parametrize("extra, message", [
    (["--patch-size", "100", "128"], "multiples of 128"),
    (["--lambda", "-1"], "positive"),
    (["--N", "48"], "multiple of 32"),
    (["--amp"], "--amp needs --cuda"),
    (["--batch-size", "9"], "fewer than --batch-size"),
    (["-lr", "-1"], "--learning-rate -1 must be a positive number"),
    (["--lr_epoch", "-3"], "must be at least 1"),
    (["--max-minutes", "0"], "--max-minutes must be positive"),
    (["--lambda", "0.013", "0.0130000001"], "--lambda 0.013 and 0.0130000001 would both train into mse_lambda_0.013"),
])
def test_bad_options_are_one_line_errors(data: Path, tmp_path: Path, capsys, extra, message):
    argv = cli(data, tmp_path, *extra)
    if extra[0] == "--patch-size":
        argv = argv[:argv.index("--patch-size")] + argv[argv.index("--patch-size") + 3:]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("train.py: error: ")
    assert not any(tmp_path.iterdir())


def test_a_missing_checkpoint_is_a_failure_not_a_usage_error(data: Path, tmp_path: Path, capsys):
    assert train.main(cli(data, tmp_path, "--checkpoint", "nope.pth.tar")) == 1
    assert capsys.readouterr().err.strip() == "train.py: error: checkpoint not found: nope.pth.tar"


@pytest.mark.slow
def test_command_line_error_has_no_traceback(tmp_path: Path):
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "-d", str(tmp_path / "missing")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"train.py: error: dataset folder not found: {tmp_path / 'missing'}"]


@pytest.mark.slow
def test_torchrun_two_processes_on_gloo(data: Path, tmp_path: Path):
    argv = cli(data, tmp_path, "--batch-size", "2", "--max-test-images", "1", "--epochs", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         str(ROOT / "train.py"), *argv],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 process(es)" in r.stdout and r.stdout.count("test epoch 0") == 1  # rank 0 alone reports
    assert "Grad strides do not match bucket view strides" not in r.stderr  # one-head tables are row-major
    run = tmp_path / "mse_lambda_0.013"  # the default lambda
    ck = torch.load(run / LATEST, weights_only=True)
    assert ck["args"]["batch_size"] == 2 and len(ck["rng"]) == 2
    assert not any(k.startswith("module.") for k in ck["state_dict"])
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert load_model(run / LATEST).N == 32


def _figures(ck) -> list[dict]:
    """The history without wall-clock speeds."""
    return [{k: v for k, v in h.items() if k not in ("train_images_per_s", "train_step_seconds")}
            for h in ck["history"]]


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_resumes_at_the_next_batch_exactly(data: Path, tmp_path: Path, monkeypatch, capsys):
    """--max-minutes (or a signal) stops after a step with a checkpoint; resuming equals never stopping."""
    from training.stop import StopRequest

    argv = ["--epochs", "2", "--lambda", "0.01", "--batch-size", "1"]
    steps = lambda a: a[:a.index("--steps-per-epoch") + 1] + ["3"] + a[a.index("--steps-per-epoch") + 2:]  # noqa: E731
    assert train.main(steps(cli(data, tmp_path / "whole", *argv))) == 0
    polls = []

    def budget_after_four_steps(self):  # polled before each step and after each epoch
        polls.append(1)
        return "budget" if len(polls) == 6 else None  # 3 steps, end of epoch 0, 1 step: stop

    monkeypatch.setattr(StopRequest, "local_reason", budget_after_four_steps)
    assert train.main(steps(cli(data, tmp_path / "split", *argv, "--max-minutes", "60"))) == 0
    err = capsys.readouterr().err
    latest = tmp_path / "split" / "mse_lambda_0.01" / LATEST
    assert f"time budget of 60 min reached at epoch 1 step 1; resume with --checkpoint {latest}" in err
    partial = torch.load(latest, weights_only=True)
    assert partial["epoch"] == 0 and partial["partial"]["epoch"] == 1 and partial["partial"]["steps"] == 1
    assert partial["global_step"] == 4
    monkeypatch.undo()
    assert train.main(steps(cli(data, tmp_path / "split", "--checkpoint", str(latest)))) == 0
    a = torch.load(tmp_path / "whole" / "mse_lambda_0.01" / LATEST, weights_only=True)
    b = torch.load(latest, weights_only=True)
    assert b["partial"] is None and a["global_step"] == b["global_step"] == 6
    assert _figures(a) == _figures(b)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


@pytest.mark.slow
def test_resume_applies_a_new_learning_rate_and_schedule(data: Path, tmp_path: Path):
    assert train.main(cli(data, tmp_path, "--epochs", "1", "--lambda", "0.01")) == 0
    latest = tmp_path / "mse_lambda_0.01" / LATEST
    assert train.main(cli(data, tmp_path, "--checkpoint", str(latest), "--epochs", "4", "-lr", "5e-5",
                          "--lr_epoch", "2", "--aux-learning-rate", "2e-3")) == 0
    ck = torch.load(latest, weights_only=True)
    assert [h["train_lr"] for h in ck["history"]] == pytest.approx([1e-4, 5e-5, 5e-6, 5e-6])
    assert ck["args"]["learning_rate"] == 5e-5 and ck["args"]["lr_epoch"] == [2]  # what was used
    assert ck["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-6)
    assert ck["aux_optimizer"]["param_groups"][0]["lr"] == 2e-3


@pytest.mark.slow
def test_stale_temporary_files_are_removed_and_test_dir_picks_the_best_epoch(data: Path, tmp_path: Path, capsys):
    run = tmp_path / "runs" / "mse_lambda_0.01"
    run.mkdir(parents=True)
    stale = run / ".checkpoint_latest.pth.tar.k3j4h5.part"  # what a kill during a save leaves
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / "kodak-like"
    write_images(other, 2, 5)
    assert train.main(cli(data, tmp_path / "runs", "--epochs", "1", "--lambda", "0.01", "--max-test-images", "0",
                          "--test-dir", str(other))) == 0
    assert not stale.exists()
    assert f"tested on {other}" in capsys.readouterr().out
    assert torch.load(run / LATEST, weights_only=True)["args"]["test_dir"] == str(other)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["latest", "copies"])
def test_a_full_disk_while_saving_is_one_line_naming_the_file_and_the_last_good_checkpoint(
        data, tmp_path, monkeypatch, capsys, file_size_limit, when):
    """The disk refuses the second epoch's checkpoint (``latest``), or the copies made of it (best, epoch)."""
    saves = []
    real_save = torch.save

    def disk_fills_up(obj, f):
        saves.append(1)
        if len(saves) == 2 and when == "latest":
            file_size_limit(1024)
        real_save(obj, f)
        if len(saves) == 2 and when == "copies":
            file_size_limit(1024)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    try:
        rc = train.main(cli(data, tmp_path, "--epochs", "3", "--lambda", "0.01", "--save-every", "1"))
    finally:
        file_size_limit(None)
    latest = tmp_path / "mse_lambda_0.01" / LATEST
    err = capsys.readouterr().err.strip().splitlines()
    written = f"{latest}" if when == "latest" else f"{latest.parent}/checkpoint_(best|epoch001).pth.tar"
    assert rc == 1 and len(err) == 1, err
    assert re.fullmatch(f"train.py: error: File too large: {written}; the last good checkpoint is {latest}", err[0])
    monkeypatch.undo()
    assert torch.load(latest, weights_only=True)["epoch"] == (0 if when == "latest" else 1)
    assert sorted(p.name for p in latest.parent.glob(".*.part")) == []


@pytest.mark.slow
def test_a_second_trainer_is_refused_and_sigterm_leaves_a_resumable_checkpoint(data: Path, tmp_path: Path, capsys):
    """SIGTERM goes to the whole process group, data workers included, as a cluster sends it."""
    import signal
    import time

    argv = cli(data, tmp_path, "--epochs", "200", "--lambda", "0.01") + ["-n", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *argv], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    latest = tmp_path / "mse_lambda_0.01" / LATEST
    try:
        deadline = time.monotonic() + 120
        while not latest.exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert latest.exists(), first.stderr.read() if first.poll() is not None else "no checkpoint in 120 s"
        # the same run again, and a resume of it: both refused while the first trains
        assert train.main(cli(data, tmp_path, "--epochs", "200", "--lambda", "0.01", "--resume")) == 1
        assert train.main(cli(data, tmp_path, "--checkpoint", str(latest))) == 1
        err = capsys.readouterr().err
        assert err.count(f"{latest.parent} is being trained by another process (host ") == 2
        assert f"pid {first.pid})" in err
        os.killpg(first.pid, signal.SIGTERM)  # the trainer and its data workers
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 143, err
    assert "mse_lambda_0.01: terminated at " in err and f"resume with --checkpoint {latest}" in err
    ck = torch.load(latest, weights_only=True)
    done = ck["global_step"]
    assert train.main(cli(data, tmp_path, "--checkpoint", str(latest), "--epochs", str(ck["epoch"] + 3))) == 0
    assert torch.load(latest, weights_only=True)["global_step"] > done


def _live_processes_in_group(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that still run (zombies left for init do not count)."""
    live = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(entry.name))
    return live


FAILING_STEP = """
import json, multiprocessing, sys
sys.path.insert(0, {root!r})
import torch
import train
import training.loop

def out_of_memory(o, x):
    with open({pids!r}, "w") as f:
        json.dump([p.pid for p in multiprocessing.active_children()], f)
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

training.loop.train_step = out_of_memory
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through Linux's /proc")
def test_out_of_memory_in_a_step_ends_the_run_and_its_data_workers(data: Path, tmp_path: Path):
    """With the default data workers (which ignore SIGTERM), a failed step once left the process waiting forever."""
    pids = tmp_path / "workers.json"
    runner = tmp_path / "runner.py"
    runner.write_text(FAILING_STEP.format(root=str(ROOT), pids=str(pids)))
    argv = cli(data, tmp_path / "runs", "--epochs", "1", "--lambda", "0.01")
    del argv[argv.index("-n"):argv.index("-n") + 2]  # the default number of workers
    proc = subprocess.Popen([sys.executable, str(runner), *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        _, err = proc.communicate(timeout=120)
        survivors = _live_processes_in_group(proc.pid)
    finally:
        if proc.poll() is None or _live_processes_in_group(proc.pid):
            os.killpg(proc.pid, 9)
            proc.communicate()
    assert proc.returncode == 1
    assert err.strip().splitlines() == [
        "train.py: error: mse_lambda_0.01: out of memory at epoch 0 on cpu with batches of 1 128x128 patches: "
        "try a smaller --batch-size or --patch-size"]
    workers = json.loads(pids.read_text())
    assert len(workers) == train.build_parser().get_default("num_workers") >= 1
    assert survivors == []


@pytest.mark.slow
def test_an_unexpected_error_is_one_line_and_leaves_no_workers(data: Path, tmp_path: Path, monkeypatch, capsys):
    import multiprocessing

    import training.loop

    def broken(o, x):
        raise RuntimeError("index 7 is out of bounds\n(more detail)")

    monkeypatch.setattr(training.loop, "train_step", broken)
    argv = cli(data, tmp_path, "--epochs", "2", "--lambda", "0.01") + ["-n", "2"]
    assert train.main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "train.py: error: mse_lambda_0.01: RuntimeError: index 7 is out of bounds"]
    assert multiprocessing.active_children() == []


def _help_entries(text: str) -> dict[str, str]:
    """Each option's entry in --help (its first option string -> the entry on one line)."""
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in text.splitlines() + ["  -end"]:
        if line.startswith("  -") or not line.startswith("   "):
            if current:
                entries[current[0].split()[0].rstrip(",")] = " ".join(" ".join(current).split())
            current = [line] if line.startswith("  -") else []
        elif current:
            current.append(line)
    return entries


def test_help_gives_every_default(monkeypatch):
    import argparse

    from models import TCMConfig
    from training.options import SHAPE_OPTIONS

    monkeypatch.setenv("COLUMNS", "100")
    parser = train.build_parser()
    entries = _help_entries(parser.format_help())
    checked = set()
    for action in parser._actions:
        default = action.default
        if not action.option_strings or default is None or default is argparse.SUPPRESS or default is False:
            continue
        if isinstance(default, bool):
            shown = "on"
        elif isinstance(default, (list, tuple)):
            shown = " ".join(map(str, default))
        else:
            shown = str(default)
        entry = entries[action.option_strings[0]]
        assert f"(default: {shown}" in entry, entry
        checked.add(action.option_strings[0])
    assert {"-e", "-lr", "--batch-size", "--seed", "--patch-size", "--lr_epoch", "--save"} <= checked
    for name in SHAPE_OPTIONS:  # None on the command line: the published model's, said in the help
        value = getattr(TCMConfig, name)
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
        assert f"(default: {shown})" in entries[f"--{name.replace('_', '-')}"]
