"""file_codec.weights: the weights a file names, found in pretrained/ and $TCM_WEIGHTS_PATH, checked once loaded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from file_codec import Codec, CodecError
from file_codec import weights
from file_codec.weights import UNKNOWN, WEIGHTS_PATH_ENV, WeightsFinder, WeightsIndex, locate, search_folders
from tests.helpers import codec_checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ck")
    return codec_checkpoint(folder / "a.pth.tar", seed=0), codec_checkpoint(folder / "b.pth.tar", seed=1)


@pytest.fixture
def places(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(a shipped folder, a folder on $TCM_WEIGHTS_PATH), both empty; the index in tmp_path."""
    shipped, extra = tmp_path / "pretrained", tmp_path / "extra"
    shipped.mkdir()
    extra.mkdir()
    monkeypatch.setattr(weights, "SHIPPED", shipped)
    monkeypatch.setenv(WEIGHTS_PATH_ENV, os.pathsep.join([str(extra), "", str(tmp_path / "missing"), str(extra)]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return shipped, extra


def loader(calls: list[Path]):
    def load(path: Path) -> Codec:
        calls.append(Path(path))
        return Codec.load(path)

    return load


def test_folders_are_the_shipped_one_then_the_variable_s_in_order_each_once(places, tmp_path):
    shipped, extra = places
    assert search_folders() == [shipped, extra, tmp_path / "missing"]


@pytest.mark.slow
def test_weights_are_found_loaded_once_and_remembered(places, checkpoints):
    shipped, extra = places
    shutil.copy(checkpoints[1], shipped / "b.pth.tar")
    shutil.copy(checkpoints[0], extra / "a.pth.tar")
    (extra / "0-notes.pth").write_bytes(b"not a checkpoint")
    wanted = Codec.load(checkpoints[0]).weights_id
    calls: list[Path] = []
    finder = WeightsFinder(loader(calls))
    assert finder.codec_for(wanted).weights_id == wanted
    assert calls == [shipped / "b.pth.tar", extra / "0-notes.pth", extra / "a.pth.tar"]  # in the order looked in
    assert finder.codec_for(wanted).weights_id == wanted and len(calls) == 3  # kept for the next file
    # a new process: the index sends it straight to the file
    calls.clear()
    assert WeightsFinder(loader(calls)).codec_for(wanted).weights_id == wanted
    assert calls == [extra / "a.pth.tar"]
    index = WeightsIndex()
    assert index.lookup(extra / "a.pth.tar") == wanted.hex() and index.lookup(extra / "0-notes.pth") is None
    assert locate(wanted).file == extra / "a.pth.tar"


@pytest.mark.slow
def test_a_wrong_index_entry_is_checked_and_corrected(places, checkpoints):
    shipped, extra = places
    shutil.copy(checkpoints[1], shipped / "b.pth.tar")
    shutil.copy(checkpoints[0], extra / "a.pth.tar")
    wanted = Codec.load(checkpoints[0]).weights_id
    index = WeightsIndex()
    index.remember(shipped / "b.pth.tar", wanted.hex())  # says b holds a's weights
    index.save()
    calls: list[Path] = []
    assert WeightsFinder(loader(calls)).codec_for(wanted).weights_id == wanted
    assert calls == [shipped / "b.pth.tar", extra / "a.pth.tar"]
    assert WeightsIndex().lookup(shipped / "b.pth.tar") == Codec.load(checkpoints[1]).id_hex


def test_a_changed_file_is_looked_at_again(places, checkpoints):
    _, extra = places
    shutil.copy(checkpoints[0], extra / "a.pth.tar")
    index = WeightsIndex()
    index.remember(extra / "a.pth.tar", "0123456789ab")
    shutil.copy(checkpoints[1], extra / "a.pth.tar")
    os.utime(extra / "a.pth.tar", ns=(1, 1))
    assert index.lookup(extra / "a.pth.tar") == UNKNOWN


def test_unknown_weights_are_one_line_naming_the_id_and_the_places(places, checkpoints):
    shipped, extra = places
    shutil.copy(checkpoints[1], extra / "b.pth.tar")
    with pytest.raises(CodecError) as e:
        WeightsFinder(loader([])).codec_for(bytes.fromhex("00112233aabb"))
    message = str(e.value)
    assert "\n" not in message and "00112233aabb" in message
    assert str(shipped) in message and str(extra) in message and "--checkpoint" in message and WEIGHTS_PATH_ENV in message
    # without the variable, the message says it is not set
    os.environ.pop(WEIGHTS_PATH_ENV)
    with pytest.raises(CodecError, match=rf"\${WEIGHTS_PATH_ENV} is not set"):
        WeightsFinder(loader([])).codec_for(bytes.fromhex("00112233aabb"))


def test_an_unwritable_index_only_costs_time(places, checkpoints, tmp_path, monkeypatch):
    _, extra = places
    shutil.copy(checkpoints[0], extra / "a.pth.tar")
    (tmp_path / "cache").write_text("a file where the cache folder would be")
    wanted = Codec.load(checkpoints[0]).weights_id
    assert WeightsFinder(loader([])).codec_for(wanted).weights_id == wanted
    assert locate(wanted).file is None and locate(wanted).unchecked == 1


def _damage_a_table(src: Path, dst: Path) -> None:
    """A copy of ``src`` with one bit flipped in the data of an entropy table (a buffer: the weights id,
    over the parameters, is unchanged), its CRC left as it was: what a bad disk or copy does."""
    import struct
    import zipfile

    import torch

    keys = list(torch.load(src, weights_only=True))
    storage = max(i for i, k in enumerate(keys) if k.endswith("_quantized_cdf"))  # saved in the keys' order
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        part = next(i for i in z.infolist() if i.filename.endswith(f"/data/{storage}"))
    name_length, extra_length = struct.unpack_from("<HH", data, part.header_offset + 26)
    data[part.header_offset + 30 + name_length + extra_length + part.file_size // 2] ^= 0x04
    dst.write_bytes(data)


def test_a_damaged_file_of_the_wanted_weights_is_skipped_for_the_next(places, checkpoints):
    """Two files of one weights id, the first damaged: the second decodes (it stopped at the first)."""
    _, extra = places
    _damage_a_table(checkpoints[0], extra / "a.pth.tar")
    shutil.copy(checkpoints[0], extra / "b.pth.tar")
    good = Codec.load(checkpoints[0])
    calls: list[Path] = []
    codec = WeightsFinder(loader(calls)).codec_for(good.weights_id, good.tables_id)
    assert calls == [extra / "a.pth.tar", extra / "b.pth.tar"] and codec.tables_id == good.tables_id
    assert WeightsIndex().lookup(extra / "a.pth.tar") is None  # remembered as unusable


def test_a_file_with_the_weights_but_other_tables_gives_way_to_one_with_both(places, checkpoints):
    """Same weights, other coding tables (a training checkpoint's, rebuilt elsewhere): the next file with both
    is taken; where none has both, the first with the weights, whose decoding names both tables."""
    import torch

    _, extra = places
    state = torch.load(checkpoints[0], weights_only=True)
    state["entropy_bottleneck._quantized_cdf"][0, 1] += 1
    torch.save(state, extra / "a.pth.tar")
    good = Codec.load(checkpoints[0])
    assert WeightsFinder(loader([])).codec_for(good.weights_id, good.tables_id).tables_id != good.tables_id
    shutil.copy(checkpoints[0], extra / "b.pth.tar")
    assert WeightsFinder(loader([])).codec_for(good.weights_id, good.tables_id).tables_id == good.tables_id
