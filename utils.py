"""Helpers shared by every part of the project: padding, safe writes, errors, exits, memory.

The command-line tools follow one convention, kept here: a failure is one line
``<tool>: error: <message>`` on stderr and an exit status of 2 for a wrong
command line (argparse's own status), 1 for anything else the user can act on
(missing or damaged files, bad data), 130 when interrupted and 143 when
terminated (SIGTERM); tools with an extra status say so (eval.py: 3, a decoder
that disagrees with its encoder).

This module imports neither torch nor CompressAI at load time (the functions
that need them import them when called), so that light commands such as
``codec.py info`` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator

# CompressAI scripts helpers with torch.jit at import time and on first use, which
# current torch flags as deprecated on every run of every tool.  This is the one
# filter for it: the packages that import CompressAI import this module first.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

if TYPE_CHECKING:
    import torch
    from torch import Tensor

#: Image sides must be multiples of this: TCM's 8x8 Swin windows on the 1/16 latent.
PAD_MULTIPLE = 128

Padding = tuple[int, int, int, int]

#: Suffixes of checkpoint files, longest first.
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")

#: Exit statuses shared by all tools.
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 128 + signal.SIGTERM


# ----------------------------------------------------------------------- padding
def pad(x: Tensor, p: int = PAD_MULTIPLE) -> tuple[Tensor, Padding]:
    """Zero-pad an NCHW batch, centred, to the next multiple of ``p`` on each side.

    TCM needs sides that are multiples of 128 (8x8 Swin windows on the 1/16
    latent); this is the padding of the paper's evaluation.  Returns the padded
    tensor and ``(left, right, top, bottom)`` for :func:`crop`.
    """
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    h, w = x.shape[-2:]
    padding, _ = compute_padding(h, w, min_div=p)
    return F.pad(x, padding, mode="constant", value=0.0), padding


def pad_replicate(x: Tensor, p: int = PAD_MULTIPLE) -> tuple[Tensor, Padding]:
    """As :func:`pad` (centred, the same ``padding``), but repeating the edge rows and columns.

    Zero padding puts a hard black edge beside the image that the transforms
    spend bits on and that bleeds into the decoded border; repeated edges give
    them nothing new to code (the file codec's padding: README, The file codec).
    """
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    h, w = x.shape[-2:]
    padding, _ = compute_padding(h, w, min_div=p)
    return F.pad(x, padding, mode="replicate"), padding


#: The paddings by name: "zero" is the paper's, "replicate" the file codec's.
PADDINGS: dict[str, Callable[[Tensor, int], tuple[Tensor, Padding]]] = {"zero": pad, "replicate": pad_replicate}


def crop(x: Tensor, padding: Padding) -> Tensor:
    """Undo :func:`pad`."""
    left, right, top, bottom = padding
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


# ----------------------------------------------------------------------- errors and exits
class ToolError(Exception):
    """A failure the user can act on; the message is one readable line."""

    exit_status = EXIT_FAILURE


class UsageError(ToolError):
    """A command line that cannot work as given (a bad option value or combination)."""

    exit_status = EXIT_USAGE


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster's pre-emption, ``kill``): unwinds like Ctrl-C, so clean-ups run."""


def first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def describe_os_error(e: OSError) -> str:
    """``No space left on device: out.png`` rather than Python's ``[Errno 28] …`` form."""
    what = e.strerror or first_line(e) or type(e).__name__
    return f"{what}: {e.filename}" if e.filename else what


def error_line(prog: str, message: object) -> str:
    return f"{prog}: error: {first_line(message) if message else 'failed'}"


def run_tool(prog: str, body: Callable[[], int]) -> int:
    """Run a tool's ``main`` body under the shared convention (see the module docstring).

    SIGTERM raises :class:`Terminated` while ``body`` runs, so temporary files
    are removed on the way out exactly as for Ctrl-C.
    """
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return body()
    except ToolError as e:
        print(error_line(prog, e), file=sys.stderr, flush=True)
        return e.exit_status
    except OSError as e:
        print(error_line(prog, describe_os_error(e)), file=sys.stderr, flush=True)
        return EXIT_FAILURE
    except MemoryError:
        print(error_line(prog, "out of memory"), file=sys.stderr, flush=True)
        return EXIT_FAILURE
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the shared one-line error: ``prog: error: message (see --help)``, status 2."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {first_line(message)} (see --help)\n")


# ----------------------------------------------------------------------- files
@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    A crash or kill while writing never leaves a half-written ``path``, and an
    existing file is only ever replaced by a complete new one.  The result gets
    the replaced file's permissions, or the umask's default for a new file.
    Temporary files are named ``.<name>.<random>.part`` (see :func:`remove_stale_parts`).
    An ``OSError`` names ``path``, never the temporary file.
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
            if e.filename == tmp or e.filename is None:
                raise OSError(e.errno, e.strerror or first_line(e), str(path)) from None
            raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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

    torch reports a full disk as a ``RuntimeError`` from its zip writer; it is
    raised here as the ``OSError`` it is, naming ``path``.
    """
    import torch

    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        except RuntimeError as e:
            raise OSError(f"cannot write ({first_line(e)})") from None


# ----------------------------------------------------------------------- inputs and outputs
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
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ToolError(f"cannot write {what} {path}: {e.strerror or first_line(e)}") from None
    return path


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------- provenance
ROOT = Path(__file__).resolve().parent


def project_commit() -> str | None:
    """The checkout's commit (``+dirty`` with uncommitted changes), or None outside a git checkout."""
    import subprocess

    try:
        run = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=10, check=True).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def device_name(device: torch.device | str = "cpu") -> str:
    """The card's or the processor's name, as a figure's reader needs it."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What produced a result: project commit, library versions, device and threads."""
    import platform

    import compressai
    import torch

    return {
        "commit": project_commit(),
        "torch": str(torch.__version__),
        "compressai": str(compressai.__version__),
        "python": platform.python_version(),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------- devices
def synchronize(device: torch.device) -> None:
    """Wait for the device, so that a clock around its work measures the work."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of returning it.

    By default every large tensor is a fresh ``mmap`` whose pages fault in on
    first touch and go back to the kernel when it is freed: a forward pass of
    TCM on a Kodak image paid about 600 000 page faults (a sixth of its CPU
    time), and a training step of TCM-S (batch 8 of 256x256) spent a third of
    its CPU time in the kernel.  Here large blocks come from the heap instead of
    ``mmap`` (``M_MMAP_MAX`` 0: raising ``M_MMAP_THRESHOLD`` alone stops at
    32 MiB, below a training activation) and the heap is never trimmed, so a
    second pass reuses the first pass's memory.  The process keeps its peak
    memory until exit.  The command-line tools call this at start; it is a
    no-op (False) off glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold, m_mmap_max = -1, -2, -3, -4
    ok = mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value
    ok &= mallopt(m_mmap_max, 0)  # and above it: heap, not mmap
    ok &= mallopt(m_trim_threshold, (1 << 31) - 1)  # a C int: the largest
    ok &= mallopt(m_top_pad, 256 << 20)
    return bool(ok)
