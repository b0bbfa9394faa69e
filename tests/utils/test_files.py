"""Atomic writes, regular files, what an output may replace, stale temporaries (utils/files.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from utils.files import save_torch_atomic


def test_atomic_write_replaces_only_with_a_complete_file(tmp_path):
    from utils.files import atomic_write

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    with atomic_write(target) as tmp:
        open(tmp, "wb").write(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch):
    path = tmp_path / "checkpoint.pth.tar"
    save_torch_atomic({"epoch": 1}, path)

    def dies_half_way(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_torch_atomic({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth.tar"]


# ----------------------------------------------------------------------- inputs and outputs
def test_open_regular_file_refuses_fifos_devices_and_folders_without_blocking(tmp_path):
    import os

    from utils.files import NotARegularFile, open_regular_file

    (tmp_path / "f").write_bytes(b"data")
    with open_regular_file(tmp_path / "f") as f:
        assert f.read() == b"data"
    os.mkfifo(tmp_path / "fifo")  # no writer: a plain open() would wait forever
    for path, what in ((tmp_path / "fifo", "a FIFO"), ("/dev/zero", "a character device"), (tmp_path, "a folder")):
        with pytest.raises(NotARegularFile, match=f"is {what}"):
            open_regular_file(path)


def test_check_output_never_replaces_an_input_and_asks_for_force_for_another_kind(tmp_path):
    import os

    from PIL import Image

    from utils.cli import ToolError
    from utils.files import check_output

    image = tmp_path / "photo.png"
    Image.new("RGB", (4, 4)).save(image)
    check_output(tmp_path / "new.tcm", "tcm", [image])  # absent: fine
    with pytest.raises(ToolError, match="holds a PNG image, not a .tcm file: .* give --force"):
        check_output(image, "tcm")
    check_output(image, "tcm", force=True)
    check_output(image, "png")  # the same kind: an earlier output, replaced as before
    for force in (False, True):
        with pytest.raises(ToolError, match="is also an input"):
            check_output(tmp_path / "." / "photo.png", "png", [image], force=force)
    (tmp_path / "empty.json").write_bytes(b"")
    check_output(tmp_path / "empty.json", "json")
    (tmp_path / "results.json").write_text('{"name": "x"}')
    check_output(tmp_path / "results.json", "json")
    torch.save({"w": torch.zeros(2)}, tmp_path / "ck.pth.tar")
    with pytest.raises(ToolError, match="holds a zip archive .a checkpoint.., not JSON"):
        check_output(tmp_path / "ck.pth.tar", "json")
    (tmp_path / "old.tcm").write_bytes(b"whatever an old run left")  # content unknown: its name tells
    check_output(tmp_path / "old.tcm", "tcm")
    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(ToolError, match="is a FIFO"):
        check_output(tmp_path / "fifo.png", "png", force=True)


def test_stale_parts_are_only_atomic_writes_own_and_old_enough(tmp_path):
    import os
    import time

    from utils.files import atomic_write, remove_stale_parts

    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "a.tcm") as tmp:
            open(tmp, "wb").write(b"half")
            os.link(tmp, tmp_path / Path(tmp).name.replace(".part", ".keep"))  # what a kill -9 would leave
            raise RuntimeError
    left, = tmp_path.glob("*.keep")
    left.rename(tmp_path / left.name.replace(".keep", ".part"))
    others = [tmp_path / n for n in (".a.tcm.ABCDEFGH.part", ".a.png.abcdefgh.part", "x.part", ".b.tcm.abcdefgh.part")]
    for p in others:
        p.write_bytes(b"")
    old = time.time() - 3600
    for p in [*tmp_path.glob(".a.tcm.*.part"), *others[:3]]:
        os.utime(p, (old, old))
    assert remove_stale_parts(tmp_path, [".tcm"], older_than=600) == [tmp_path / left.name.replace(".keep", ".part")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in others)
    assert sorted(remove_stale_parts(tmp_path)) == sorted([others[1], others[3]])  # a locked folder: all of its own


# ----------------------------------------------------------------------- links: replaced, never written through
def _victim(folder: Path) -> Path:
    """A file that a link placed where an output goes points to; it must stay as it is."""
    victim = folder / "victim.txt"
    victim.write_bytes(b"precious")
    victim.chmod(0o600)
    return victim


def _intact(victim: Path) -> bool:
    return victim.read_bytes() == b"precious" and victim.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_every_atomic_writer_replaces_a_link_never_its_target(tmp_path, link):
    import os

    from PIL import Image

    from utils.files import copy_atomic, save_image_atomic, write_bytes_atomic, write_text_atomic

    victim = _victim(tmp_path)
    (tmp_path / "source").write_bytes(b"copied")
    umask = os.umask(0o022)
    os.umask(umask)
    writers = {"bytes": lambda p: write_bytes_atomic(p, b"new"), "text": lambda p: write_text_atomic(p, "new"),
               "copy": lambda p: copy_atomic(tmp_path / "source", p),
               "torch": lambda p: save_torch_atomic({"w": torch.zeros(1)}, p),
               "image": lambda p: save_image_atomic(Image.new("RGB", (2, 2)), p, "PNG")}
    for name, write in writers.items():
        out = tmp_path / f"out-{name}"
        os.symlink(victim, out) if link == "symbolic" else os.link(victim, out)
        write(out)
        assert _intact(victim), name
        assert not out.is_symlink() and out.stat().st_ino != victim.stat().st_ino and out.read_bytes() != b"precious"
        assert out.stat().st_mode & 0o777 == (0o666 & ~umask if link == "symbolic" else 0o600), name


def test_open_own_file_replaces_a_link_and_keeps_a_file_of_its_own(tmp_path):
    import os

    from utils.files import NotARegularFile, open_own_file

    victim = _victim(tmp_path)
    for mode in ("w", "a", "r+"):
        for link in (os.symlink, os.link, lambda v, p: os.symlink(tmp_path / "nowhere", p)):
            out = tmp_path / f"out-{mode}"
            out.unlink(missing_ok=True)
            link(victim, out)
            fd = open_own_file(out, mode)
            os.write(fd, b"mine")
            os.close(fd)
            assert _intact(victim) and not out.is_symlink() and out.read_bytes() == b"mine"
            assert not (tmp_path / "nowhere").exists()  # a dangling link is not followed to create its target
    own = tmp_path / "own"
    own.write_bytes(b"rows\n")
    for mode, expected in (("a", b"rows\nmore"), ("r+", b"more\nmore"), ("w", b"more")):
        fd = open_own_file(own, mode)
        os.write(fd, b"more")
        os.close(fd)
        assert own.read_bytes() == expected, mode
    os.mkfifo(tmp_path / "fifo")  # no reader: opening it to write would block
    for path, what in ((tmp_path / "fifo", "a FIFO"), (tmp_path, "a folder")):
        with pytest.raises(NotARegularFile, match=f"is {what}"):
            open_own_file(path)


# ----------------------------------------------------------------------- a full disk names the file written
def test_a_failed_checkpoint_write_says_why_and_names_the_file_written(tmp_path, file_size_limit):
    """torch's zip writer hides the OSError, a copy's error names its source: both name the file written."""
    import errno

    from utils.cli import describe_os_error
    from utils.files import copy_atomic

    latest, best = tmp_path / "checkpoint_latest.pth.tar", tmp_path / "checkpoint_best.pth.tar"
    save_torch_atomic({"w": torch.zeros(1 << 16)}, latest)  # 256 KiB
    file_size_limit(64 << 10)
    with pytest.raises(OSError) as e:
        save_torch_atomic({"w": torch.zeros(1 << 15)}, latest)
    assert e.value.errno == errno.EFBIG and describe_os_error(e.value) == f"File too large: {latest}"
    with pytest.raises(OSError) as e:
        copy_atomic(latest, best)  # the best epoch's copy
    assert e.value.errno == errno.EFBIG and describe_os_error(e.value) == f"File too large: {best}"
    assert torch.load(latest, weights_only=True)["w"].shape == (1 << 16,)  # the previous one, intact
    assert [p.name for p in tmp_path.iterdir()] == [latest.name]  # no temporary left
