"""Batches of files through the codec: output naming, one line per failure or success, atomic outputs.

Nothing here imports torch: ``codec.py info`` runs on this module and the
container alone; the model's side (:class:`file_codec.codec.Codec`) comes in
through the callers of the compress and decompress batches.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from PIL import Image

from utils.cli import ToolError, describe_os_error, first_line
from utils.files import (check_output, check_writable_folder, open_regular_file, remove_stale_parts, save_image_atomic,
                         write_bytes_atomic)
from utils.process import process_age

from . import container
from .container import ContainerError, Header
from .settings import CodecError, check_image_size
from .weights import locate

if TYPE_CHECKING:
    from .codec import Codec

CHECKPOINT_ENV = "TCM_CHECKPOINT"
PROG = "codec.py"
#: A temporary output file untouched this long has no writer left (each is written and renamed at once).
STALE_AFTER_S = 600.0


def fail(message: str) -> None:
    """One line on stderr, the tools' shared form."""
    print(f"{PROG}: error: {message}".replace("\n", " "), file=sys.stderr, flush=True)


def read_image(path: Path, max_pixels: int | None = None) -> Image.Image:
    """The image as 8-bit RGB; what the conversion loses or changes is said in a ``note:`` line.

    An image a ``.tcm`` file cannot hold, or over ``max_pixels``, is refused
    before its pixels are decoded (docs/format.md, Memory).
    """
    from datasets import open_rgb

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = open_rgb(path, check_size=lambda width, height: check_image_size(width, height, max_pixels))
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    return image


def image_format(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise CodecError(f"{path}: cannot tell an image format to write from its extension (use .png)")
    return fmt


def plan_outputs(inputs: list[Path], out: str | os.PathLike, suffix: str) -> list[Path]:
    """One output path per input: OUT itself, or OUT/<stem><suffix> when OUT is a folder.

    OUT is a folder when it is one already, when it ends in a path separator,
    or when several inputs are given (it is then created).
    """
    as_folder = str(out).endswith((os.sep, "/")) or len(inputs) > 1
    out = Path(out)
    if not as_folder and not out.is_dir():
        if not out.parent.is_dir():
            raise CodecError(f"{out.parent}: no such folder")
        return [out]
    if out.exists() and not out.is_dir():
        raise CodecError(f"{out}: {'several inputs need' if len(inputs) > 1 else 'a name ending in / needs'} "
                         "OUT to be a folder")
    out.mkdir(parents=True, exist_ok=True)
    return [out / (p.stem + suffix) for p in inputs]


def clean_stale_temporaries(outputs: Iterable[Path]) -> None:
    """Remove what an earlier run killed mid-write left beside these outputs (``.NAME.<random>.part``).

    Only temporaries of names ending like these outputs, untouched for
    :data:`STALE_AFTER_S`: another process writing into the same folder
    holds its temporary file for one write only.
    """
    folders: dict[Path, set[str]] = {}
    for dst in outputs:
        if dst is not None and dst.suffix:
            folders.setdefault(dst.parent, set()).add(dst.suffix)
    for folder, suffixes in folders.items():
        removed = remove_stale_parts(folder, suffixes, older_than=STALE_AFTER_S)
        if removed:
            print(f"note: removed {len(removed)} temporary file(s) left in {folder} by an interrupted run",
                  file=sys.stderr)


def run_batch(inputs: list[Path], outputs: list, job: Callable[[Path, Path], None],
              check: Callable[[Path, Path], None] | None = None) -> int:
    """Run ``check`` then ``job`` on each (input, output) pair; one line per failure; 1 if any failed."""
    failed = 0
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, outputs):
        try:
            if dst is not None:
                key = dst.resolve()
                if key == src.resolve():
                    raise CodecError("the output would overwrite the input")
                if key in seen:
                    raise CodecError(f"its output {dst} is also the output of {seen[key]}")
                seen[key] = src
                if check is not None:
                    check(src, dst)
            job(src, dst)
        except ToolError as e:
            message = str(e)  # an unreadable image's message names the file already
            fail(message if message.startswith(f"{src}:") else f"{src}: {message}")
            failed += 1
        except MemoryError:
            fail(f"{src}: out of memory (try a smaller --tile)")
            failed += 1
        except OSError as e:
            fail(f"{src}: {describe_os_error(e)}")
            failed += 1
        except Exception as e:  # never a traceback: a bug or a torch error still ends in one line
            fail(f"{src}: {type(e).__name__}: {first_line(e)}")
            failed += 1
    return 1 if failed else 0


def read_file(path: Path) -> bytes:
    """The bytes of a ``.tcm`` file; a FIFO, a device, a file that does not begin as a TCM file (read up to
    its magic bytes only) or one too large is refused before it is read."""
    limit = 4 * container.MAX_PIXELS
    with open_regular_file(path) as f:
        head = f.read(len(container.MAGIC))
        container.check_magic(head)
        data = head + f.read(limit + 1 - len(head))
    if len(data) > limit:
        raise ContainerError("too large to be a TCM file")
    return data


def output_check(kind: Callable[[Path], str], inputs: Iterable[Path], force: bool) -> Callable[[Path, Path], None]:
    """Refuse an output that is an input, or an existing file of another kind unless ``force`` (utils.files.check_output)."""
    inputs = list(inputs)

    def check(src: Path, dst: Path) -> None:
        check_output(dst, kind(dst), inputs, force, what="output", force_option="-f/--force")

    return check


def _report(quiet: bool, line: str, coding_s: float) -> None:
    """A file done: its line, ending in its coding time and the wall time since the process started."""
    if not quiet:
        age = process_age()
        wall = f", wall {age:.2f} s" if age is not None else ""
        print(f"{line}, coding {coding_s:.2f} s{wall}", flush=True)


def check_folders_writable(outputs: Iterable[Path]) -> None:
    """Refuse, before any image is coded, an output folder where no file can be created (read-only)."""
    for folder in dict.fromkeys(dst.parent for dst in outputs):
        check_writable_folder(folder)


def prepared_outputs(inputs: list[Path], out: str | os.PathLike, suffix: str) -> list[Path]:
    """The outputs of a batch (:func:`plan_outputs`), their folders checked writable and cleared of what an
    interrupted run left."""
    outputs = plan_outputs(inputs, out, suffix)
    check_folders_writable(outputs)
    clean_stale_temporaries(outputs)
    return outputs


def compress_files(codec: "Codec", inputs: list[Path], out: str | os.PathLike, force: bool = False,
                   quiet: bool = False, also_read: Iterable[Path] = ()) -> int:
    """Each image to a ``.tcm`` file; ``also_read`` (the checkpoint) is never overwritten either."""
    outputs = prepared_outputs(inputs, out, ".tcm")

    def job(src: Path, dst: Path) -> None:
        start = time.perf_counter()
        image = read_image(src, codec.max_pixels)
        data = codec.encode(image)
        write_bytes_atomic(dst, data)
        width, height = image.size
        _report(quiet, f"{src} -> {dst}: {len(data)} bytes, {8 * len(data) / (width * height):.4f} bpp",
                time.perf_counter() - start)

    return run_batch(inputs, outputs, job, output_check(lambda _: "tcm", [*inputs, *also_read], force))


def decompress_files(codec_for: Callable[[Header], "Codec"], inputs: list[Path], out: str | os.PathLike,
                     force: bool = False, quiet: bool = False, also_read: Iterable[Path] = ()) -> int:
    """Each ``.tcm`` file to an image, decoded by ``codec_for(its header)``."""
    from datasets.colour import srgb_marking  # beside torch, which decoding loads anyway

    outputs = prepared_outputs(inputs, out, ".png")

    def job(src: Path, dst: Path) -> None:
        start = time.perf_counter()
        fmt = image_format(dst)
        data = read_file(src)
        header, _ = container.parse(data)
        image = codec_for(header).decode(data)
        save_image_atomic(image, dst, fmt, **srgb_marking(fmt))  # the file says it holds sRGB (docs/format.md, Colour)
        width, height = image.size
        _report(quiet, f"{src} -> {dst}: {width}x{height}, {8 * len(data) / (width * height):.4f} bpp",
                time.perf_counter() - start)

    return run_batch(inputs, outputs, job, output_check(lambda dst: image_format(dst).lower(), [*inputs, *also_read],
                                                        force))


def describe(header: Header, file_size: int) -> str:
    payload = sum(z + y for z, y in header.lengths)
    left, right, top, bottom = header.padding
    hp, wp = header.padded_size
    crcs, pixels = header.tile_crcs, header.width * header.height
    over_limit = (f" ({pixels} pixels: decompressing needs --max-pixels {pixels})"
                  if pixels > container.DEFAULT_MAX_PIXELS else "")
    lines = [
        f"format version  {header.version}",
        f"weights id      {header.weights_id.hex()}",
        *([f"tables id       {header.tables_id.hex()}"] if header.version >= 2 else []),
        f"entropy path    {header.entropy} ({container.ENTROPY_NOTES[header.entropy]})",
        f"image size      {header.width}x{header.height}" + over_limit,
        f"padding         {container.PADDING_NAMES[header.padding_mode]}: left {left}, right {right}, top {top}, "
        f"bottom {bottom} (coded {wp}x{hp})",
        f"tiles           {len(header.lengths)} of at most {header.tile}x{header.tile}",
        f"stream bytes    z {sum(z for z, _ in header.lengths)}, y {sum(y for _, y in header.lengths)}",
        f"tile crcs       {' '.join(f'{c:08x}' for c in crcs[:4])}{' ...' if len(crcs) > 4 else ''}"
        if header.version >= 3 else f"latent crc      {header.latent_crc:08x}",
        f"header bytes    {file_size - payload}",
        f"file bytes      {file_size} ({8 * file_size / (header.width * header.height):.4f} bpp)",
    ]
    return "\n".join(lines)


def describe_weights(weights_id: bytes) -> str:
    """Where decompressing without --checkpoint would find the weights, as far as the index knows (no loading)."""
    found = locate(weights_id)
    if found.file is not None:
        return f"found: {found.file}"
    if found.unchecked:
        return (f"not checked ({found.unchecked} checkpoint file(s) in {found.places} not loaded yet; "
                "decompress looks in them)")
    return f"not found in {found.places}"


def info_files(inputs: list[Path]) -> int:
    def job(src: Path, _: None) -> None:
        data = read_file(src)
        header, _ = container.parse(data)
        lines = describe(header, len(data)).splitlines()
        lines.insert(2, f"weights         {describe_weights(header.weights_id)}")
        print(f"{src}:\n" + "\n".join("  " + line for line in lines))

    return run_batch(inputs, [None] * len(inputs), job)
