"""datasets/folder.py: layouts, reproducible splits and crops, small and unreadable images."""

from __future__ import annotations

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
    assert len([w for w in caught if "bad.png" in str(w.message)]) == 1


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
