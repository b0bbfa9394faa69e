"""datasets/folder.py: layouts, reproducible splits and crops, small and unreadable images."""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import DatasetError, PatchDataset, find_splits, readable_images, split_paths
from tests.helpers import BSDS, require


def write_image(path: Path, w: int, h: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    for i in range(10):
        write_image(tmp_path / f"img{i}.png", 150 + i, 140, i)
    return tmp_path


def test_plain_folder_split_is_reproducible_and_disjoint(plain: Path):
    train, test, layout = find_splits(plain, test_fraction=0.2, seed=3)
    assert layout == "plain"
    assert len(test) == 2 and len(train) == 8
    assert not set(train) & set(test)
    assert (train, test) == find_splits(plain, test_fraction=0.2, seed=3)[:2]
    others = {tuple(find_splits(plain, test_fraction=0.2, seed=s)[1]) for s in range(6)}
    assert len(others) > 1  # the seed chooses the held-out part


def test_split_needs_two_images_and_a_sane_fraction(tmp_path: Path):
    with pytest.raises(DatasetError):
        split_paths([tmp_path / "a.png"], 0.1, 0)
    with pytest.raises(DatasetError):
        split_paths([tmp_path / "a.png", tmp_path / "b.png"], 1.5, 0)


def test_imagefolder_layout(tmp_path: Path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    write_image(tmp_path / "train" / "a.png", 130, 130, 0)
    write_image(tmp_path / "train" / "b.jpg", 130, 130, 1)
    write_image(tmp_path / "test" / "c.png", 130, 130, 2)
    train, test, layout = find_splits(tmp_path)
    assert layout == "imagefolder"
    assert [p.name for p in train] == ["a.png", "b.jpg"] and [p.name for p in test] == ["c.png"]
    (tmp_path / "test" / "c.png").unlink()
    (tmp_path / "test").rmdir()
    with pytest.raises(DatasetError, match="no test/"):
        find_splits(tmp_path)


def test_missing_folder_is_a_dataset_error(tmp_path: Path):
    with pytest.raises(DatasetError, match="not found"):
        find_splits(tmp_path / "nope")


def test_unreadable_file_is_skipped_with_one_warning(plain: Path):
    (plain / "broken.png").write_bytes(b"not an image at all")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, test, _ = find_splits(plain, 0.2, 0)
    named = [w for w in caught if "broken.png" in str(w.message)]
    assert len(named) == 1
    assert all(p.name != "broken.png" for p in train + test)


def test_file_damaged_after_its_header_is_replaced_and_warned_once(tmp_path: Path):
    good = write_image(tmp_path / "good.png", 200, 200, 0)
    bad = write_image(tmp_path / "bad.png", 200, 200, 1)
    bad.write_bytes(bad.read_bytes()[:200])  # header intact, pixels cut off
    assert readable_images([good, bad]) == [good, bad]
    ds = PatchDataset([bad, good], (128, 128), train=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, again = ds[0], ds[0]
    assert torch.equal(first, ds[1]) and torch.equal(again, ds[1])  # the next readable image
    assert [str(w.message) for w in caught] == [f"skipping unreadable image {bad}: not a readable image (OSError)"]
    with pytest.warns(UserWarning), pytest.raises(DatasetError) as e:
        PatchDataset([bad, bad], (128, 128), train=False)[0]
    assert str(e.value) == f"none of the 2 test images can be read (the last, {bad}: not a readable image (OSError))"


def test_random_crops_depend_on_seed_epoch_and_index_only(tmp_path: Path):
    p = write_image(tmp_path / "a.png", 400, 300, 0)
    ds = PatchDataset([p, p], (128, 128), train=True, seed=1)
    a0 = ds[0]
    assert a0.shape == (3, 128, 128) and a0.dtype == torch.float32
    assert 0.0 <= a0.min() and a0.max() <= 1.0
    assert torch.equal(a0, PatchDataset([p, p], (128, 128), train=True, seed=1)[0])
    assert not torch.equal(a0, ds[1])  # another index, another crop
    ds.set_epoch(1)
    assert not torch.equal(a0, ds[0])  # another epoch, another crop


def test_centre_crop_for_testing(tmp_path: Path):
    p = write_image(tmp_path / "a.png", 300, 200, 0)
    x = PatchDataset([p], (128, 256), train=False)[0]
    full = torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1).float() / 255
    assert torch.equal(x, full[:, 36:164, 22:278])


def test_small_image_is_upscaled_not_a_crash(tmp_path: Path):
    p = write_image(tmp_path / "small.png", 60, 90, 0)
    for train in (True, False):
        x = PatchDataset([p], (128, 256), train=train)[0]
        assert x.shape == (3, 128, 256)


def test_bsds_crops():
    root = require(BSDS)
    train, test, layout = find_splits(root)
    assert layout == "imagefolder" and len(train) >= 100 and len(test) >= 100
    x = PatchDataset(train[:1], (256, 256), train=True)[0]
    assert x.shape == (3, 256, 256) and x.std() > 0.01


def _resizes_at_most(monkeypatch, pixels: int) -> list[tuple[int, int]]:
    """Record every Pillow resize, refusing (before any work) one to more than ``pixels`` pixels."""
    sizes: list[tuple[int, int]] = []
    resize = Image.Image.resize

    def bounded(self, size, *args, **kwargs):
        sizes.append(tuple(size))
        assert size[0] * size[1] <= pixels, f"a resize to {size[0]}x{size[1]}"
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", bounded)
    return sizes


@pytest.mark.parametrize("width, height", [(20000, 1), (1, 20000)])
def test_a_thin_strip_is_cropped_before_it_is_upscaled(tmp_path: Path, monkeypatch, width, height):
    """Upscaling the whole 20000x1 strip to cover 256x256 made 5,120,000x256 pixels (6.4 GB) for one sample."""
    ramp = np.linspace(0, 255, max(width, height)).round().astype(np.uint8)
    a = np.repeat(ramp.reshape(height, width, 1), 3, axis=2)
    Image.fromarray(a).save(tmp_path / "strip.png")
    sizes = _resizes_at_most(monkeypatch, 256 * 256)
    for train in (True, False):
        x = PatchDataset([tmp_path / "strip.png"], (256, 256), train=train, seed=3)[0]
        assert x.shape == (3, 256, 256)
        # one source pixel's worth of the ramp (it rises 255/19999 of a level per pixel), upscaled
        assert float(x.max() - x.min()) <= 1 / 255 + 1e-6
        if not train:  # the centre: source pixels 9999.5 to 10000.5 of the ramp
            assert abs(float(x.mean()) * 255 - 127.5) <= 1.0
    assert sizes and max(w * h for w, h in sizes) == 256 * 256


def test_upscaled_crops_are_those_of_the_whole_upscaled_image(tmp_path: Path):
    """Same crop positions, same pixels (up to rounding) as resizing the whole image, then cropping."""
    paths = [write_image(tmp_path / "a.png", 90, 60, 0), write_image(tmp_path / "b.png", 40, 200, 1),
             write_image(tmp_path / "c.png", 150, 100, 2)]
    size = (128, 256)
    worst = 0.0
    for train in (True, False):
        ds = PatchDataset(paths, size, train=train, seed=4)
        for epoch in range(3):
            ds.set_epoch(epoch)
            for index, path in enumerate(paths):
                img = Image.open(path).convert("RGB")
                scale = max(size[0] / img.height, size[1] / img.width)
                whole = img.resize((max(size[1], math.ceil(img.width * scale)),
                                    max(size[0], math.ceil(img.height * scale))), Image.Resampling.BICUBIC)
                if train:
                    rng = random.Random(f"4-{epoch}-{index}")
                    top, left = rng.randint(0, whole.height - size[0]), rng.randint(0, whole.width - size[1])
                else:
                    top, left = (whole.height - size[0]) // 2, (whole.width - size[1]) // 2
                expected = np.asarray(whole.crop((left, top, left + size[1], top + size[0])), dtype=np.float64)
                got = ds[index].permute(1, 2, 0).double().numpy() * 255
                worst = max(worst, float(np.abs(got - expected).max()))
    assert worst <= 2 + 1e-6  # a level or two where the box corners round (Pillow reads them as float32)
