"""What an evaluation reads: checkpoint files (or sweep folders) and an image folder."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Sequence

from PIL import Image

from datasets import IMAGE_EXTENSIONS, ImageReadError, open_rgb
from models.checkpoint import CHECKPOINT_SUFFIXES, RELEASE_NAME
from utils import ToolError


class EvalError(ToolError):
    """Bad input to the evaluation; the message is one readable line."""


def find_checkpoints(args: Sequence[str]) -> list[Path]:
    """Checkpoint files of the arguments; a folder gives its release and best checkpoints.

    In a folder, release files (``updates.py`` names) and files with "best" in
    their name are taken; a folder with neither gives all its checkpoint files.
    """
    found: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files = sorted(
                f for f in path.iterdir()
                if f.is_file() and not f.name.startswith(".") and f.name.endswith(CHECKPOINT_SUFFIXES)
            )
            chosen = [f for f in files if RELEASE_NAME.match(f.name) or "best" in f.name.lower()]
            if not (chosen or files):
                raise EvalError(f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) in folder {path}")
            found += chosen or files
        elif path.is_file():
            found.append(path)
        else:
            raise EvalError(f"checkpoint not found: {path}")
    return found


def load_images(data: str) -> list[tuple[str, Image.Image]]:
    """All readable images of a folder (or one image file) as 8-bit RGB.

    Unreadable files and files without an image extension are reported on
    stderr by name and skipped; dotfiles are ignored.  Grayscale, palette,
    RGBA, CMYK and 16-bit images are converted by ``datasets.open_rgb``.
    """
    path = Path(data)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    elif path.is_file():
        files = [path]
    else:
        raise EvalError(f"data not found: {path}")
    images = []
    for f in files:
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
        images.append((f.name, img))
    if not images:
        raise EvalError(f"no readable images in {path}")
    return images


