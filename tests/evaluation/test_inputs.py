"""Finding checkpoints in folders and images in a folder (evaluation/inputs.py)."""

from __future__ import annotations

import pytest

from evaluation.inputs import EvalError, find_checkpoints
from models import checkpoint_stem


def test_checkpoint_folders_give_release_and_best_files(tmp_path):
    for name in ("tcm-s-mse-0.05-0123abcd.pth.tar", "checkpoint_best.pth.tar", "checkpoint.pth.tar", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_checkpoints([str(tmp_path)])] == [
        "checkpoint_best.pth.tar", "tcm-s-mse-0.05-0123abcd.pth.tar"]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "mse_lambda_0.05.pth.tar").write_bytes(b"")
    assert [p.name for p in find_checkpoints([str(plain)])] == ["mse_lambda_0.05.pth.tar"]
    assert checkpoint_stem(plain / "mse_lambda_0.05.pth.tar") == "mse_lambda_0.05"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvalError, match="no checkpoint files"):
        find_checkpoints([str(empty)])
