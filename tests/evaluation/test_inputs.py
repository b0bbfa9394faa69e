"""Finding checkpoints in files, run folders and sweep folders; naming them (evaluation/inputs.py)."""

from __future__ import annotations

import pytest

from evaluation.inputs import EvalError, find_checkpoints, lambda_from_name, unique_names
from models import checkpoint_stem


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_a_sweep_folder_gives_one_checkpoint_per_run(tmp_path):
    sweep = tmp_path / "runs"
    _touch(sweep / "mse_lambda_0.0035", "checkpoint_best.pth.tar", "checkpoint_latest.pth.tar",
           "checkpoint_epoch004.pth.tar")
    _touch(sweep / "mse_lambda_0.013", "checkpoint_best.pth.tar", "checkpoint_latest.pth.tar")
    _touch(sweep / "mse_lambda_0.05", "checkpoint_latest.pth.tar")  # stopped in its first epoch
    _touch(sweep / "notes", "readme.txt")
    _touch(sweep, "sweep_summary.txt", "tcm-x-0123abcd.pth.tar")
    rel = lambda paths: [str(p.relative_to(sweep)) for p in paths]  # noqa: E731
    assert rel(find_checkpoints([str(sweep)])) == [
        "mse_lambda_0.0035/checkpoint_best.pth.tar", "mse_lambda_0.013/checkpoint_best.pth.tar",
        "mse_lambda_0.05/checkpoint_latest.pth.tar", "tcm-x-0123abcd.pth.tar"]
    assert rel(find_checkpoints([str(sweep)], which="latest"))[:3] == [
        "mse_lambda_0.0035/checkpoint_latest.pth.tar", "mse_lambda_0.013/checkpoint_latest.pth.tar",
        "mse_lambda_0.05/checkpoint_latest.pth.tar"]
    # one run folder, and the same checkpoint twice: once
    assert rel(find_checkpoints([str(sweep / "mse_lambda_0.013"), str(sweep / "mse_lambda_0.013")])) == [
        "mse_lambda_0.013/checkpoint_best.pth.tar"]


def test_other_folders_give_release_and_best_files(tmp_path):
    _touch(tmp_path, "tcm-s-mse-0.05-0123abcd.pth.tar", "model_best.pth", "checkpoint.pth.tar", "notes.txt")
    assert [p.name for p in find_checkpoints([str(tmp_path)])] == [
        "model_best.pth", "tcm-s-mse-0.05-0123abcd.pth.tar"]
    plain = tmp_path / "plain"
    _touch(plain, "mse_lambda_0.05.pth.tar")
    assert [p.name for p in find_checkpoints([str(plain)])] == ["mse_lambda_0.05.pth.tar"]
    assert checkpoint_stem(plain / "mse_lambda_0.05.pth.tar") == "mse_lambda_0.05"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvalError, match="no checkpoint files"):
        find_checkpoints([str(empty)])


def test_names_are_unique(tmp_path):
    paths = [tmp_path / "a" / "mse_lambda_0.013" / "checkpoint_best.pth.tar",
             tmp_path / "b" / "mse_lambda_0.013" / "checkpoint_best.pth.tar",
             tmp_path / "a" / "mse_lambda_0.013" / "checkpoint_latest.pth.tar",
             tmp_path / "tcm-mse-0.05-89abcdef.pth.tar"]
    assert unique_names(paths) == ["a/mse_lambda_0.013", "b/mse_lambda_0.013", "mse_lambda_0.013-latest",
                                   "tcm-mse-0.05"]


@pytest.mark.parametrize("name, expected", [
    ("mse_lambda_0.05.pth.tar", (0.05, "mse")),
    ("runs/ms-ssim_lambda_8.73/checkpoint_best.pth.tar", (8.73, "ms-ssim")),
    ("tcm-demo-mse-0.013-34b03bc4.pth.tar", (0.013, "mse")),
    ("model.pth", (None, None)),
])
def test_lambda_read_off_a_name(name, expected):
    assert lambda_from_name(name) == expected


def test_images_with_a_colour_profile_are_evaluated_in_srgb_and_said(tmp_path, capsys):
    """eval.py scores the sRGB colours a colour-managed viewer shows (its reconstructions are sRGB too)."""
    import io

    import numpy as np
    from PIL import ImageCms

    from evaluation.inputs import load_images
    from tests.colour_profiles import matrix_profile
    from tests.helpers import noise_image

    p3 = matrix_profile("Display P3")
    image = noise_image(24, 36, seed=8)
    image.save(tmp_path / "p3.png", icc_profile=p3)
    image.save(tmp_path / "plain.png")
    images = dict(load_images(str(tmp_path)))
    assert capsys.readouterr().err.strip() == f"note: {tmp_path / 'p3.png'}: colour profile 'Display P3' converted to sRGB"
    srgb = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(p3)), ImageCms.createProfile("sRGB"))
    assert np.array_equal(np.asarray(images["p3.png"]), np.asarray(srgb))
    assert np.array_equal(np.asarray(images["plain.png"]), np.asarray(image))
