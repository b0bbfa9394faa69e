"""Files written safely and read safely: atomic writes, stale temporaries, regular files, output kinds."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from .cli import ToolError, first_line

#: Suffixes of checkpoint files, longest first.
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    A crash or kill while writing never leaves a half-written ``path``, and an
    existing file is only ever replaced by a complete new one.  The temporary
    file is created new (``mkstemp``: never an existing name, never through a
    link) and the rename replaces the name ``path`` itself: a symbolic or hard
    link at ``path`` is replaced, what it points to is left as it was.  The
    result gets the replaced regular file's permissions, or the umask's default
    for a new file (a link's target lends it nothing).  Temporary files are
    named ``.<name>.<random>.part`` (see :func:`remove_stale_parts`).  An
    ``OSError`` names ``path``, never the temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        try:
            yield tmp
        except OSError as e:
            if _about_the_output(e, tmp):
                raise OSError(e.errno, e.strerror or first_line(e), str(path)) from None
            raise
        os.chmod(tmp, _replaced_mode(path))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


#: Errors of writing that concern the file written, whichever file an error names.
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _about_the_output(e: OSError, tmp: str) -> bool:
    """Whether ``e`` concerns the temporary output file: it names it, names nothing, or is a full disk.

    ``shutil.copyfile`` names the source of a copy that filled the disk first
    (``filename``) and the destination second (``filename2``).
    """
    return e.filename in (tmp, None) or (e.filename2 == tmp and e.errno in _WRITE_ERRORS)


def _replaced_mode(path: Path) -> int:
    """The permissions of the regular file at ``path`` (not following a link), or the umask's default."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            return st.st_mode & 0o777
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


#: :func:`open_own_file`'s modes, as ``open()`` spells them: empty it, append to it, read and write it as it is.
_OWN_FILE_FLAGS = {"w": os.O_WRONLY, "a": os.O_WRONLY | os.O_APPEND, "r+": os.O_RDWR}


def open_own_file(path: str | os.PathLike, mode: str = "w") -> int:
    """Open ``path`` for writing as a file of its own, never through a link; a file descriptor.

    For the files the tools write in place (a lock, rows appended as they
    come) rather than through :func:`atomic_write`.  A symbolic link at
    ``path``, or a file that has other names too (a hard link), is not
    written through: the name is removed (the link, never what it points to)
    and a new file is created in its place.  A regular file of its own is
    kept: emptied (``mode`` "w"), written at its end ("a") or read and
    written as it is ("r+"); a missing one is created.  A folder, FIFO,
    device or socket raises :class:`NotARegularFile` without blocking.  The
    checks are made on the opened descriptor (``O_NOFOLLOW``): a link swapped
    in meanwhile is refused by the kernel, not missed.
    """
    flags = (_OWN_FILE_FLAGS[mode] | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    for _ in range(8):  # each round removes one link: only a racing writer makes a second round
        try:
            _refuse_special_name(path)
            fd = os.open(path, flags, 0o666)
        except OSError as e:
            if e.errno != errno.ELOOP:  # ELOOP: a symbolic link, which O_NOFOLLOW does not open
                raise
            _unlink_name(path)
            continue
        try:
            st = os.fstat(fd)
            _refuse_special(st.st_mode)
            own = st.st_nlink <= 1
            if own:
                os.set_blocking(fd, True)
                if mode == "w":
                    os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        if own:
            return fd
        os.close(fd)  # one name of a file that has others: a file of our own instead
        _unlink_name(path)
    raise OSError(errno.ELOOP, "keeps being replaced by a link while it is opened", os.fspath(path))


def _refuse_special_name(path: str | os.PathLike) -> None:
    """Refuse a folder, FIFO, device or socket at ``path`` before opening it (a link is fine: it goes)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISLNK(st.st_mode):
        _refuse_special(st.st_mode)


def _unlink_name(path: str | os.PathLike) -> None:
    """Remove the name ``path`` (a link), not what it points to; already gone is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


#: :func:`atomic_write`'s temporary names: ``.<name>.<mkstemp's random characters>.part``.
PART_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]+\.part$")


def remove_stale_parts(folder: str | os.PathLike, suffixes: Iterable[str] | None = None,
                       older_than: float = 0.0) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` leaves when a process is killed mid-write.

    With the defaults every one in ``folder`` goes: only for a folder no other
    process writes to (a locked run folder).  In a folder others may write to,
    give ``older_than`` (seconds since the file last changed): a temporary file
    lives for the time of one write, so one that has not changed for minutes
    has no writer left, whichever host or process made it; ``suffixes`` keeps
    to the temporaries of outputs with those endings (``.tcm``, ``.png``).
    Only regular files named exactly as :func:`atomic_write` names them are touched.
    """
    removed = []
    endings = tuple(s.lower() for s in suffixes) if suffixes is not None else None
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = PART_NAME.match(entry.name)
        if m is None or (endings is not None and not m.group("name").lower().endswith(endings)):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < older_than:
                continue
            os.unlink(entry.path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
        removed.append(Path(entry.path))
    return removed


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path) as tmp:
        Path(tmp).write_text(text)


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    with atomic_write(dst) as tmp:
        shutil.copyfile(src, tmp)


def save_torch_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`, synced to disk before the rename.

    torch's zip writer turns the ``OSError`` of a failed write (a full disk)
    into a ``RuntimeError`` ("unexpected pos …") without its cause: the
    writes go through :class:`_Writes`, which keeps it, and it is raised as
    the ``OSError`` it is, naming ``path``.
    """
    import torch

    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        writes = _Writes(f)
        try:
            torch.save(obj, writes)
            f.flush()
            os.fsync(f.fileno())
        except RuntimeError as e:
            if writes.error is not None:
                raise OSError(writes.error.errno, writes.error.strerror, str(path)) from None
            raise OSError(errno.EIO, f"cannot write ({first_line(e)})", str(path)) from None


def save_image_atomic(image: Any, path: str | os.PathLike, fmt: str, **options: Any) -> None:
    """A Pillow image saved in format ``fmt`` through :func:`atomic_write`."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        image.save(f, format=fmt, **options)


class _Writes:
    """A binary file's ``write`` that keeps the ``OSError`` it raised (see :func:`save_torch_atomic`)."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


class NotARegularFile(ToolError):
    """A folder, FIFO, device or socket where a file is to be read or replaced.

    Reading a FIFO waits for a writer forever and reading ``/dev/zero`` never
    ends, while their size reads 0: the tools refuse them before reading.
    The message does not name the path (callers do).
    """


_SPECIAL_FILES = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISSOCK, "a socket"))


def _refuse_special(mode: int) -> None:
    if not stat.S_ISREG(mode):
        what = next((name for test, name in _SPECIAL_FILES if test(mode)), "a special file")
        raise NotARegularFile(f"is {what}, not a regular file")


def check_regular_file(path: str | os.PathLike) -> None:
    """Raise :class:`NotARegularFile` unless ``path`` is a regular file (``FileNotFoundError`` if absent)."""
    _refuse_special(os.stat(path).st_mode)


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """``open(path, "rb")`` for a regular file; anything else raises :class:`NotARegularFile` without blocking.

    The file is opened non-blocking (a FIFO without a writer would block the
    open itself) and checked on the open descriptor, so nothing swapped in
    between a check and the read gets through.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _refuse_special(os.fstat(fd).st_mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


#: File kinds told from the first bytes; images are told by Pillow, JSON by parsing.
_MAGIC = ((b"TCM\x89", "tcm"), (b"%PDF", "pdf"), (b"%!PS", "postscript"), (b"PK\x03\x04", "zip"),
          (b"\x80\x02", "pickle"))
_KIND_NAMES = {"tcm": "a .tcm file", "json": "JSON", "zip": "a zip archive (a checkpoint?)",
               "pickle": "a pickle (a checkpoint?)", "pdf": "a PDF", "postscript": "PostScript", "svg": "an SVG",
               "html": "HTML", "unknown": "something else"}
#: Output names whose kind the extension gives (besides the image formats Pillow knows).
_SUFFIX_KINDS = {".tcm": "tcm", ".json": "json", ".pdf": "pdf", ".ps": "postscript", ".eps": "postscript",
                 ".svg": "svg", ".html": "html", ".htm": "html", ".pth": "zip", ".pt": "zip", ".tar": "zip",
                 ".ckpt": "zip"}
_JSON_SNIFF_LIMIT = 64 << 20


def kind_of_name(path: str | os.PathLike) -> str:
    """The kind of file a name's extension promises ("png", "jpeg", "json", "tcm", …), or "unknown"."""
    suffix = Path(path).suffix.lower()
    if suffix in _SUFFIX_KINDS:
        return _SUFFIX_KINDS[suffix]
    from PIL import Image

    fmt = Image.registered_extensions().get(suffix)
    return fmt.lower() if fmt else "unknown"


def file_kind(path: str | os.PathLike) -> str:
    """What an existing regular file holds: "empty", a kind of :func:`kind_of_name`, or "unknown".

    Told from the content where it is recognisable (a PNG named ``x.tcm`` is a
    "png"), from the name otherwise.
    """
    with open_regular_file(path) as f:
        head = f.read(4096)
        if not head:
            return "empty"
        for magic, kind in _MAGIC:
            if head.startswith(magic):
                return kind
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if text[:1] in (b"{", b"["):
            import json

            f.seek(0)
            try:
                json.loads(f.read(_JSON_SNIFF_LIMIT + 1))
                return "json"
            except ValueError:
                pass
        lowered = text[:1024].lower()
        if lowered.startswith(b"<") and b"<svg" in lowered:
            return "svg"
        if lowered.startswith((b"<!doctype html", b"<html")):
            return "html"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return (image.format or "unknown").lower()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return kind_of_name(path)


def describe_kind(kind: str) -> str:
    return _KIND_NAMES.get(kind, f"a {kind.upper()} image")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == Path(b).resolve()


def check_output(path: str | os.PathLike, kind: str, inputs: Iterable[str | os.PathLike] = (),
                 force: bool = False, what: str = "output", force_option: str = "--force") -> None:
    """Refuse, before any work, to write ``path`` where writing would destroy something.

    Never one of ``inputs`` (what the run reads), nor a folder, FIFO or device,
    ``force`` or not; an existing file holding another kind of thing than the
    ``kind`` to be written (a PNG where a .tcm file would go, a checkpoint
    where results would go) only with ``force``.  An empty file, or one of the
    same kind (an earlier run's output), is replaced as before.
    """
    path = Path(path)
    for src in inputs:
        if _same_file(path, Path(src)):
            raise ToolError(f"{what} {path} is also an input: writing it would overwrite the input")
    try:
        check_regular_file(path)
    except FileNotFoundError:
        return
    except NotARegularFile as e:
        raise ToolError(f"{what} {path} {e}") from None
    if force:
        return
    found = file_kind(path)
    if found == "empty" or (found == kind and kind != "unknown"):
        return
    raise ToolError(f"{what} {path} exists and holds {describe_kind(found)}, not {describe_kind(kind)}: "
                    f"choose another name, or give {force_option} to replace it")


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Refuse, before any work, an output whose folder cannot be created or written."""
    path = Path(path)
    if path.is_dir():
        raise ToolError(f"{what} {path} is a folder")
    try:
        _create_in(path.parent, path.name)
    except OSError as e:
        raise ToolError(f"cannot write {what} {path}: {e.strerror or first_line(e)}") from None
    return path


def check_writable_folder(folder: str | os.PathLike, what: str = "output folder") -> None:
    """Refuse, before any work, a folder in which no file can be created (read-only, not ours, full)."""
    try:
        _create_in(Path(folder), "probe")
    except OSError as e:
        raise ToolError(f"cannot write into {what} {folder}: {e.strerror or first_line(e)}") from None


def _create_in(folder: Path, name: str) -> None:
    """Create ``folder`` if need be and a temporary file in it (as :func:`atomic_write` would), then remove it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    os.close(fd)
    os.unlink(probe)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
