"""Training and test images from a folder, cropped to patches.

Two layouts are accepted: CompressAI's ``ImageFolder`` layout (``root/train``
and ``root/test``) or a plain folder of images, from which a held-out test
part is split off reproducibly.  Crops are drawn from a generator seeded by
``(seed, epoch, index)``, so a sample does not depend on the number of data
workers, on the process that loads it, or on whether the run was resumed.
"""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from utils.cli import ToolError

from .images import ImageReadError, list_images, open_rgb, to_tensor


class DatasetError(ToolError):
    """A dataset folder that cannot be used; the message is one readable line."""


def _warn_unreadable(path: Path, why: str) -> None:
    warnings.warn(f"skipping unreadable image {path}: {why}", stacklevel=3)


def readable_images(paths: Sequence[Path]) -> list[Path]:
    """The paths whose header Pillow identifies; each other file gets one warning.

    Only the header is read (cheap on large folders); a file that is damaged
    further in is caught, and warned about, when it is loaded.
    """
    good = []
    for p in paths:
        try:
            with Image.open(p) as img:
                img.size  # noqa: B018 - identification is the check
            good.append(p)
        except Exception as e:  # anything Pillow cannot identify
            _warn_unreadable(p, type(e).__name__)
    return good


def split_paths(paths: Sequence[Path], test_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Reproducible (train, test) split of a plain folder: same files and seed, same split."""
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test fraction must be between 0 and 1, got {test_fraction}")
    paths = sorted(paths)
    if len(paths) < 2:
        raise DatasetError(f"need at least 2 images to split off a test part, found {len(paths)}")
    order = list(range(len(paths)))
    random.Random(f"split-{seed}").shuffle(order)
    n_test = min(len(paths) - 1, max(1, math.ceil(test_fraction * len(paths))))
    test = sorted(paths[i] for i in order[:n_test])
    train = sorted(paths[i] for i in order[n_test:])
    return train, test


def find_splits(root: str | Path, test_fraction: float = 0.1, seed: int = 0) -> tuple[list[Path], list[Path], str]:
    """Train and test image lists under ``root`` and the layout found ("imagefolder" or "plain")."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if (root / "train").is_dir():
        if not (root / "test").is_dir():
            raise DatasetError(f"{root} has train/ but no test/ folder (CompressAI ImageFolder layout)")
        train = readable_images(list_images(root / "train"))
        test = readable_images(list_images(root / "test"))
        layout = "imagefolder"
    else:
        train, test = split_paths(readable_images(list_images(root)), test_fraction, seed)
        layout = "plain"
    if not train:
        raise DatasetError(f"no readable training images in {root}")
    if not test:
        raise DatasetError(f"no readable test images in {root}")
    return train, test, layout


def covering_size(width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the image upscaled, keeping its aspect ratio, so that a (h, w) patch fits.

    An image that holds the patch already keeps its size.
    """
    h, w = size
    scale = max(h / height, w / width)
    if scale <= 1.0:
        return width, height
    return max(w, math.ceil(width * scale)), max(h, math.ceil(height * scale))


def crop_covering(img: Image.Image, covering: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """The ``box`` crop of ``img`` resized (bicubic) to ``covering``, computing only the crop.

    Resizing the whole image first costs the whole upscaled image: a
    20000x1 strip covering a 256x256 patch is 5,120,000x256 pixels.  Here
    Pillow's two passes run on the crop's own columns and rows, in Pillow's
    order (columns first, then rows): the same filter taps at the same source
    positions as resizing the whole image and cropping, up to rounding of
    the box corners (Pillow takes them as single-precision floats).
    """
    if covering == img.size:
        return img.crop(box)
    left, top, right, bottom = box
    sx, sy = img.width / covering[0], img.height / covering[1]
    # The source rows the crop's rows read: bicubic reaches 2 rows either side when upscaling.
    first = max(0, math.floor(top * sy) - 3)
    last = min(img.height, math.ceil(bottom * sy) + 3)
    rows = img.crop((0, first, img.width, last))
    columns = rows.resize((right - left, last - first), Image.Resampling.BICUBIC,
                          box=(left * sx, 0, min(img.width, right * sx), last - first))
    return columns.resize((right - left, bottom - top), Image.Resampling.BICUBIC,
                          box=(0, top * sy - first, right - left, min(img.height, bottom * sy) - first))


class PatchDataset(Dataset):
    """Image patches as (3, h, w) float tensors in [0, 1].

    ``train=True``: a random crop per sample and epoch; ``train=False``: the
    centre crop.  Images smaller than the patch are upscaled to cover it (only
    the crop is computed).  An image
    that fails to decode is warned about once (per process) and replaced by
    the next readable one, so one bad file never stops training.
    """

    def __init__(self, paths: Sequence[Path], patch_size: Sequence[int], train: bool, seed: int = 0):
        if not paths:
            raise DatasetError("no images")
        self.paths = [Path(p) for p in paths]
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.train = train
        self.seed = seed
        self.epoch = 0
        self._bad: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        """Selects the crops of ``epoch`` (call before iterating; workers get a fresh copy)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Image.Image:
        why = ""
        for k in range(len(self.paths)):
            i = (index + k) % len(self.paths)
            if i in self._bad:
                continue
            try:
                return open_rgb(self.paths[i], warn_alpha=False)
            except ImageReadError as e:
                self._bad.add(i)
                why = str(e).removeprefix(f"{self.paths[i]}: ")
                _warn_unreadable(self.paths[i], why)
        what = "training" if self.train else "test"
        last = f" (the last, {self.paths[i]}: {why})" if why else ""
        raise DatasetError(f"none of the {len(self.paths)} {what} images can be read{last}")

    def __getitem__(self, index: int) -> torch.Tensor:
        img = self._load(index)
        h, w = self.patch_size
        width, height = covering_size(img.width, img.height, self.patch_size)
        if self.train:
            rng = random.Random(f"{self.seed}-{self.epoch}-{index}")
            top, left = rng.randint(0, height - h), rng.randint(0, width - w)
        else:
            top, left = (height - h) // 2, (width - w) // 2
        return to_tensor(crop_covering(img, (width, height), (left, top, left + w, top + h)))[0]
