"""Batches of files through the codec: output naming, one line per failure, atomic outputs."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterable

from PIL import Image

from datasets import ImageReadError, open_rgb
from utils import ToolError, atomic_write, describe_os_error, first_line, write_bytes_atomic

from . import container
from .codec import Codec, CodecError
from .container import ContainerError, Header

CHECKPOINT_ENV = "TCM_CHECKPOINT"
PROG = "codec.py"


def fail(message: str) -> None:
    """One line on stderr, the tools' shared form."""
    print(f"{PROG}: error: {message}".replace("\n", " "), file=sys.stderr, flush=True)


def read_image(path: Path) -> Image.Image:
    """The image as 8-bit RGB; what the conversion loses is said in a ``note:`` line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = open_rgb(path)
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


def run_batch(inputs: list[Path], outputs: list, job: Callable[[Path, Path], None]) -> int:
    """Run ``job`` on each (input, output) pair; one line per failure; 1 if any failed."""
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
            job(src, dst)
        except ImageReadError as e:  # its message names the file already
            fail(str(e))
            failed += 1
        except ToolError as e:
            fail(f"{src}: {e}")
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
    if path.is_dir():
        raise CodecError("is a folder")
    if path.stat().st_size > 4 * container.MAX_PIXELS:
        raise ContainerError("too large to be a TCM file")
    return path.read_bytes()


def compress_files(codec: Codec, inputs: list[Path], out: str | os.PathLike) -> int:
    outputs = plan_outputs(inputs, out, ".tcm")

    def job(src: Path, dst: Path) -> None:
        write_bytes_atomic(dst, codec.encode(read_image(src)))

    return run_batch(inputs, outputs, job)


def decompress_files(codec: Codec, inputs: list[Path], out: str | os.PathLike) -> int:
    outputs = plan_outputs(inputs, out, ".png")

    def job(src: Path, dst: Path) -> None:
        fmt = image_format(dst)
        image = codec.decode(read_file(src))
        with atomic_write(dst) as tmp, open(tmp, "wb") as f:
            image.save(f, format=fmt)

    return run_batch(inputs, outputs, job)


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
        f"entropy path    {container.PATH_NAMES[header.entropy_path]}",
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


def info_files(inputs: list[Path]) -> int:
    def job(src: Path, _: None) -> None:
        data = read_file(src)
        header, _ = container.parse(data)
        print(f"{src}:\n" + "\n".join("  " + line for line in describe(header, len(data)).splitlines()))

    return run_batch(inputs, [None] * len(inputs), job)


def needed_ids(inputs: Iterable[Path]) -> None:
    """Without a checkpoint: one line per input saying which weights it needs."""
    for src in inputs:
        try:
            header, _ = container.parse(read_file(src))
            fail(f"{src}: decompressing needs the weights it was made with ({header.weights_id.hex()}): "
                 f"pass --checkpoint CK or set {CHECKPOINT_ENV}")
        except (ToolError, OSError) as e:
            fail(f"{src}: {describe_os_error(e) if isinstance(e, OSError) else e}")
