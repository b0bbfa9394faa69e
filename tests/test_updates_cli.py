"""updates.py: training checkpoint -> release file that reloads and decodes."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

import updates
from models import load_model
from models.integer_entropy import CHECKPOINT_KEY
from models.release import round_trip_check
from tests.helpers import ROOT, noise_image, tiny_tcm


@pytest.fixture
def calibration(tmp_path):
    """Two small training images: calibration in seconds (the built-in photographs are tested once)."""
    folder = tmp_path / "calibration"
    folder.mkdir()
    for k in range(2):
        noise_image(128, 128, seed=k).save(folder / f"{k}.png")
    return ["--calibration", str(folder)]


def _training_checkpoint(path, seed=0):
    model = tiny_tcm(seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict()}, path)
    return model


def test_the_help_names_the_calibration_crop_side_without_torch():
    """updates.py spells models.integer_entropy.CALIBRATION_SIDE for its --help, which loads no torch."""
    from models.integer_entropy import CALIBRATION_SIDE

    assert updates.CALIBRATION_SIDE == CALIBRATION_SIDE


@pytest.mark.slow
def test_release_file_is_named_by_hash_reloads_and_decodes(tmp_path, capsys):
    ck = tmp_path / "checkpoint_best.pth.tar"
    model = _training_checkpoint(ck)
    assert updates.main([str(ck), "-o", str(tmp_path / "out"), "-n", "tiny-mse-0.05"]) == 0
    assert "from the built-in sample photographs" in capsys.readouterr().out  # the default calibration
    (release,) = (tmp_path / "out").glob("tiny-mse-0.05-*.pth.tar")
    digest = hashlib.sha256(release.read_bytes()).hexdigest()
    assert release.name == f"tiny-mse-0.05-{digest[:8]}.pth.tar"
    stored = torch.load(release, weights_only=True)
    assert set(stored) == {"state_dict", CHECKPOINT_KEY}  # weights and integer parameters, no optimizer
    saved = stored["state_dict"]
    assert "g_a.0.conv1.weight" in saved and stored[CHECKPOINT_KEY]["version"] == 1
    assert saved["gaussian_conditional._quantized_cdf"].numel() > 0  # tables built
    loaded = load_model(release, update=False)
    assert loaded.integer_parameters is not None
    assert torch.equal(loaded.state_dict()["g_a.0.conv1.weight"], model.state_dict()["g_a.0.conv1.weight"])
    assert round_trip_check(loaded) <= 1e-4
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left


@pytest.mark.slow
def test_half_release_is_smaller_and_still_decodes(tmp_path, capsys, calibration):
    ck = tmp_path / "ck.pth.tar"
    _training_checkpoint(ck)
    assert updates.main([str(ck), "-o", str(tmp_path), "-n", "full", *calibration]) == 0
    assert updates.main([str(ck), "-o", str(tmp_path), "-n", "half", "--half", *calibration]) == 0
    out = capsys.readouterr().out.splitlines()
    steps = [line.split("] ", 1)[1] for line in out[-6:-1]]  # each step as it starts, then what was written
    assert steps == [f"reading {ck}", "building the entropy tables of ck (N=32)",
                     f"calibrating the integer entropy model on 2 images of {calibration[1]}",
                     f"writing the release file into {tmp_path} (transforms in float16)",
                     steps[4]] and steps[4].startswith("reloading half-") and "round-tripping" in steps[4]
    assert out[-1].startswith(f"wrote {tmp_path / 'half-'}")
    (full,), (half,) = tmp_path.glob("full-*.pth.tar"), tmp_path.glob("half-*.pth.tar")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    saved = torch.load(half, weights_only=True)["state_dict"]
    assert saved["g_a.0.conv1.weight"].dtype == torch.float16
    assert saved["entropy_bottleneck.quantiles"].dtype == torch.float32
    assert saved["gaussian_conditional._quantized_cdf"].numel() == 0  # rebuilt on load
    full_model, half_model = load_model(full), load_model(half)
    assert torch.equal(full_model.gaussian_conditional.quantized_cdf, half_model.gaussian_conditional.quantized_cdf)


@pytest.mark.slow
def test_command_line_reports_errors_in_one_line(tmp_path):
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"junk")
    run = subprocess.run([sys.executable, str(ROOT / "updates.py"), str(bad), "-o", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert list(tmp_path.iterdir()) == [bad]


@pytest.mark.slow
def test_a_release_file_is_not_named_twice_and_names_stay_in_the_output_folder(tmp_path, capsys, calibration):
    ck = tmp_path / "run" / "checkpoint_best.pth.tar"
    ck.parent.mkdir()
    _training_checkpoint(ck)
    assert updates.main([str(ck), "-o", str(tmp_path / "a"), *calibration]) == 0
    (first,) = (tmp_path / "a").glob("*.pth.tar")
    assert first.name.startswith("run-")  # a train.py checkpoint is named by its run folder
    assert updates.main([str(first), "-o", str(tmp_path / "b"), *calibration]) == 0  # a release file again
    (second,) = (tmp_path / "b").glob("*.pth.tar")
    assert second.name.count("-") == 1 and second.name.startswith("run-")
    capsys.readouterr()
    assert updates.main([str(ck), "-o", str(tmp_path / "c"), "-n", "../escaped"]) == 2
    assert "without folders" in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.glob("escaped*"))



@pytest.mark.slow
def test_nan_weights_fail_the_round_trip_and_no_file_is_kept(tmp_path, capsys, calibration):
    # NaN in g_s: the decoded image is NaN, and "nan > 1e-4" is False: the check must not pass it.
    ck = tmp_path / "ck.pth.tar"
    model = _training_checkpoint(ck)
    saved = torch.load(ck, weights_only=True)
    saved["state_dict"]["module.g_s.0.subpel_conv.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(saved, ck)
    assert updates.main([str(ck), "-o", str(tmp_path / "out"), *calibration]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["updates.py: error: the release file does not decode correctly, not kept: "
                   "decoded image differs from the forward pass by nan"]
    assert list((tmp_path / "out").iterdir()) == []
    with torch.no_grad():
        model.g_s[0].subpel_conv[0].weight.fill_(float("nan"))
    model.update(force=True)
    with pytest.raises(RuntimeError, match="by nan"):
        round_trip_check(model.eval())
