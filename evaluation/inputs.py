"""What an evaluation reads: checkpoints (files, run folders, sweep folders) and an image folder."""

from __future__ import annotations

import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from datasets import IMAGE_EXTENSIONS, ImageReadError, open_rgb
from models import TCM, display_name, model_from_state_dict, read_checkpoint
from models.checkpoint import CHECKPOINT_SUFFIXES, RELEASE_NAME
from utils.cli import ToolError
from utils.files import sha256_file

#: train.py's checkpoint names in a run folder.
RUN_CHECKPOINTS = {"best": "checkpoint_best.pth.tar", "latest": "checkpoint_latest.pth.tar"}
#: Lambda and metric in a file name: ``mse_lambda_0.05``, ``ms-ssim_lambda_8.73``, ``tcm-s-mse-0.013``.
_LAMBDA_NAME = re.compile(r"(?P<metric>ms-ssim|msssim|mse)[_-](?:lambda[_-]?)?(?P<lmbda>\d+(?:\.\d+)?(?:e-?\d+)?)")


class EvalError(ToolError):
    """Bad input to the evaluation; the message is one readable line."""


def _checkpoint_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir()
                  if f.is_file() and not f.name.startswith(".") and f.name.endswith(CHECKPOINT_SUFFIXES))


def is_run_folder(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).is_file() for name in RUN_CHECKPOINTS.values())


def _run_checkpoint(run: Path, which: str) -> Path:
    """A run folder's ``which`` checkpoint; the latest if a run has no best yet (stopped in its first epoch)."""
    chosen = run / RUN_CHECKPOINTS[which]
    if chosen.is_file():
        return chosen
    latest = run / RUN_CHECKPOINTS["latest"]
    print(f"note: {run} has no {chosen.name} yet: taking {latest.name}", file=sys.stderr)
    return latest


def find_checkpoints(args: Sequence[str], which: str = "best") -> list[Path]:
    """The checkpoint files the arguments name, each once.

    A file is itself.  A run folder of ``train.py`` gives its ``which``
    checkpoint (``checkpoint_best`` or ``checkpoint_latest``); a sweep folder
    (``SAVE_PATH`` of a sweep, holding run folders) gives that checkpoint of
    each run, plus any release files beside them.  Any other folder gives its
    release files (``updates.py`` names) and files with "best" in their name,
    or all its checkpoint files if it has neither.
    """
    found: list[Path] = []
    for arg in args:
        path = Path(arg)
        if is_run_folder(path):
            found.append(_run_checkpoint(path, which))
        elif path.is_dir():
            runs = sorted(p for p in path.iterdir() if is_run_folder(p))
            files = _checkpoint_files(path)
            releases = [f for f in files if RELEASE_NAME.match(f.name)]
            if runs:
                found += [_run_checkpoint(run, which) for run in runs] + releases
                continue
            chosen = [f for f in files if f in releases or "best" in f.name.lower()]
            if not (chosen or files):
                raise EvalError(f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) and no run folders "
                                f"in folder {path}")
            found += chosen or files
        elif path.is_file():
            found.append(path)
        else:
            raise EvalError(f"checkpoint not found: {path}")
    unique: dict[Path, Path] = {}
    for f in found:
        if f.resolve() in unique:
            print(f"note: {f} is given more than once: evaluated once", file=sys.stderr)
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Display names (:func:`models.display_name`) made unique with the folders above them, then numbers."""
    names = [display_name(p) for p in paths]
    parents = [list(p.resolve().parents) for p in paths]
    depth = 0
    while len(set(names)) < len(names) and depth < 8:
        counts = Counter(names)
        for i, n in enumerate(names):
            if counts[n] > 1 and depth + 1 < len(parents[i]):
                names[i] = f"{parents[i][depth + 1].name}/{n}" if parents[i][depth + 1].name else n
        depth += 1
    counts, seen = Counter(names), Counter()
    for i, n in enumerate(names):
        if counts[n] > 1:
            seen[n] += 1
            names[i] = f"{n}#{seen[n]}"
    return names


def lambda_from_name(name: str) -> tuple[float | None, str | None]:
    """(lambda, metric) written in a file name, or (None, None)."""
    m = _LAMBDA_NAME.search(name.lower())
    if not m:
        return None, None
    metric = "mse" if m.group("metric") == "mse" else "ms-ssim"
    return float(m.group("lmbda")), metric


@dataclass
class Checkpoint:
    """A model to evaluate and what is known about it."""

    path: Path
    name: str
    model: TCM
    sha256: str
    lmbda: float | None = None
    metric: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what train.py recorded: epoch, provenance

    def describe(self) -> dict[str, Any]:
        """The checkpoint's entry in the results JSON."""
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256, "lambda": self.lmbda,
                "metric": self.metric, "N": self.model.N, **self.info}


def load_checkpoints(paths: Sequence[Path]) -> list[Checkpoint]:
    """Every checkpoint loaded before the first image, so that a bad one fails at once."""
    out = []
    for path, name in zip(paths, unique_names(paths)):
        obj = read_checkpoint(path)
        model = model_from_state_dict(obj)
        model.update(force=False)
        meta = obj if isinstance(obj, dict) and "state_dict" in obj else {}
        lmbda, metric = meta.get("lambda"), meta.get("metric")
        if lmbda is None:
            lmbda, guessed = lambda_from_name(f"{path.parent.name}/{path.name}")
            metric = metric or guessed
        info = {k: meta[k] for k in ("epoch", "global_step", "provenance") if meta.get(k) is not None}
        if meta.get("partial"):
            info["partial"] = {k: meta["partial"][k] for k in ("epoch", "steps")}
        out.append(Checkpoint(path, name, model.eval(), sha256_file(path), lmbda, metric, info))
    return out


def load_images(data: str | Sequence[str]) -> list[tuple[str, Image.Image]]:
    """All readable images of the folders or image files given, as 8-bit RGB, in order.

    Unreadable files and files without an image extension are reported on
    stderr by name and skipped; dotfiles are ignored.  Grayscale, palette,
    RGBA, CMYK and 16-bit images are converted by ``datasets.open_rgb``.  An
    image is named by its file name, or by its folder and file name where two
    of the folders hold the same name.
    """
    files: list[Path] = []
    for item in [data] if isinstance(data, (str, Path)) else data:
        path = Path(item)
        if path.is_dir():
            files += sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise EvalError(f"data not found: {path}")
    counts = Counter(f.name for f in files)
    images = []
    for f in dict.fromkeys(files):
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            print(f"skipping {f}: not an image file", file=sys.stderr)
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                img = open_rgb(f)
            except ImageReadError as e:
                print(f"skipping {e}", file=sys.stderr)
                continue
        for w in caught:
            print(f"note: {w.message}", file=sys.stderr)
        images.append((f.name if counts[f.name] == 1 else f"{f.parent.name}/{f.name}", img))
    if not images:
        raise EvalError(f"no readable images in {' '.join(map(str, [data] if isinstance(data, (str, Path)) else data))}")
    return images
