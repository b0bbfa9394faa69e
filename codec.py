"""Compress images to ``.tcm`` files and back with a TCM checkpoint.

    python codec.py compress IMAGE [IMAGE ...] OUT --checkpoint CK [--tile PIXELS]
    python codec.py decompress FILE [FILE ...] OUT [--checkpoint CK]
    python codec.py info FILE [FILE ...]

One input writes OUT as a file (or into OUT if it is a folder); several inputs
write into the folder OUT, one output each (``NAME.tcm`` / ``NAME.png``).
Every failure is one line on stderr naming its input; the others are still
processed and the exit status is 1 if any failed.  Outputs are written to a
temporary file and renamed, so an existing output is only ever replaced by a
complete one.  The file layout is documented in ``container.py``.

``--checkpoint`` defaults to the environment variable ``TCM_CHECKPOINT``.
Decompressing without either is refused, naming the weights the file needs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import warnings
import zlib

# CompressAI's import-time deprecation notice would be a two-line stderr message on every run.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from PIL import Image
from torch import Tensor

import container
from container import ContainerError, Header
from datasets import ImageReadError, open_rgb, to_image, to_tensor
from models import CheckpointError, load_model
from utils import atomic_write, crop, keep_freed_memory, pad

#: Default tile side: images whose padded sides fit are coded in one piece.
DEFAULT_TILE = 2048
CHECKPOINT_ENV = "TCM_CHECKPOINT"


class CodecError(Exception):
    """A failure to code one input; the message is one line."""


def weights_id(net: torch.nn.Module) -> bytes:
    """First bytes of a sha256 over the model's parameters (names, dtypes, shapes, values).

    Only learned parameters count: the entropy tables are derived from them by
    ``update()``, so a training checkpoint and a release file holding the same
    weights get the same id whatever their file name, format or key prefix.
    """
    h = hashlib.sha256()
    for name, p in sorted(net.named_parameters()):
        t = p.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.digest()[: container.ID_BYTES]


# ------------------------------------------------------------ entropy coding of one tile
def _symbol_bytes(symbols: dict[str, Tensor]) -> bytes:
    """The coded integers (z, then y), little-endian int32: what the latent CRC covers."""
    return b"".join(symbols[k].reshape(-1).to(torch.int32).numpy().astype("<i4").tobytes() for k in ("z", "y"))


def _bounded(stream: bytes, n_symbols: int) -> bytes:
    """The stream followed by zero words, so that the C++ decoder reads inside the buffer.

    CompressAI's rANS decoder reads 32-bit words with no bounds check.  On a
    valid stream it stops at the end; on a crafted one (the file checksum
    keeps damaged files away from it) each symbol reads at most one word, plus
    bypass words that run out once the zeros are reached.
    """
    return stream + bytes(-len(stream) % 4 + 8 * n_symbols + 4 * len(stream) + 4096)


def encode_tile(net, x: Tensor) -> tuple[bytes, bytes, bytes]:
    """(z stream, y stream, symbol bytes) of a (1, 3, H, W) tile, sides multiples of 128.

    The streams are ``TCM.compress``'s; its symbols are kept for the latent checksum.
    """
    out = net.compress(x)
    (y_stream,), (z_stream,) = out["strings"]
    return z_stream, y_stream, _symbol_bytes(out["symbols"])


def decode_tile(net, z_stream: bytes, y_stream: bytes, height: int, width: int) -> tuple[Tensor, bytes]:
    """(x_hat in [0, 1], symbol bytes) of one tile from its two streams."""
    z_shape = (height // 64, width // 64)
    z_bounded = _bounded(z_stream, net.entropy_bottleneck.channels * z_shape[0] * z_shape[1])
    y_bounded = _bounded(y_stream, net.M * (height // 16) * (width // 16))
    out = net.decompress([[y_bounded], [z_bounded]], z_shape)
    return out["x_hat"], _symbol_bytes(out["symbols"])


# ------------------------------------------------------------ images <-> bytes
@dataclass
class Codec:
    """A loaded model, its weights id and the tile side used when compressing."""

    net: torch.nn.Module
    weights_id: bytes
    tile: int = DEFAULT_TILE

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, tile: int = DEFAULT_TILE) -> "Codec":
        try:
            net = load_model(checkpoint)
        except CheckpointError as e:
            raise CodecError(str(e)) from None
        return cls(net, weights_id(net), tile)

    @property
    def id_hex(self) -> str:
        return self.weights_id.hex()

    def encode(self, image: Image.Image) -> bytes:
        """The ``.tcm`` bytes of an RGB image."""
        width, height = image.size
        if width * height > container.MAX_PIXELS or max(width, height) > container.MAX_SIDE:
            raise CodecError(f"image of {width}x{height} is larger than this codec supports")
        if self.tile % container.PAD_MULTIPLE or not container.PAD_MULTIPLE <= self.tile <= container.MAX_TILE:
            raise CodecError(f"tile side {self.tile} is not a multiple of 128 in 128..{container.MAX_TILE}")
        x, (left, _, top, _) = pad(to_tensor(image), container.PAD_MULTIPLE)
        streams, crc = [], 0
        for t, l, th, tw in container.tile_grid(*x.shape[-2:], self.tile):
            z, y, symbols = encode_tile(self.net, x[..., t : t + th, l : l + tw])
            streams.append((z, y))
            crc = zlib.crc32(symbols, crc)
        header = Header(self.weights_id, height, width, top, left, self.tile, latent_crc=crc)
        return container.pack(header, streams)

    def decode(self, data: bytes) -> Image.Image:
        """The image in ``data``; raises ContainerError or CodecError, never writes anything."""
        header, streams = container.parse(data)
        if header.weights_id != self.weights_id:
            raise CodecError(
                f"made with weights {header.weights_id.hex()}, but the checkpoint has weights "
                f"{self.id_hex}: decode it with the checkpoint that compressed it"
            )
        canvas = torch.empty(1, 3, *header.padded_size)
        crc = 0
        for (t, l, th, tw), (z, y) in zip(header.tiles(), streams):
            x_hat, symbols = decode_tile(self.net, z, y, th, tw)
            canvas[..., t : t + th, l : l + tw] = x_hat
            crc = zlib.crc32(symbols, crc)
        if crc != header.latent_crc:
            raise CodecError(
                "latent checksum mismatch: the decoded latents differ from the encoder's "
                "(a crafted file, or a decoder whose arithmetic differs from the encoder's)"
            )
        return to_image(crop(canvas, header.padding))


# ------------------------------------------------------------ files
def write_atomic(path: Path, write: Callable[[object], None]) -> None:
    """Write through a temporary file in the same folder and rename it over ``path``."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        write(f)


def read_image(path: Path, notes: list[str]) -> Image.Image:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = open_rgb(path)
    for w in caught:
        notes.append(f"note: {w.message}")
    return image


def image_format(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise CodecError(f"{path}: cannot tell an image format to write from its extension (use .png)")
    return fmt


def plan_outputs(inputs: list[Path], out: Path, suffix: str) -> list[Path]:
    """One output path per input: OUT itself, or OUT/<stem><suffix> when OUT is a folder."""
    if len(inputs) == 1 and not out.is_dir():
        if not out.parent.is_dir():
            raise CodecError(f"{out.parent}: no such folder")
        return [out]
    if out.exists() and not out.is_dir():
        raise CodecError(f"{out}: several inputs need OUT to be a folder")
    out.mkdir(parents=True, exist_ok=True)
    return [out / (p.stem + suffix) for p in inputs]


def fail(message: str) -> None:
    print(f"codec: error: {message}".replace("\n", " "), file=sys.stderr)


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
        except (CodecError, ContainerError) as e:
            fail(f"{src}: {e}")
            failed += 1
        except MemoryError:
            fail(f"{src}: out of memory (try a smaller --tile)")
            failed += 1
        except OSError as e:
            fail(f"{src}: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
            failed += 1
        except Exception as e:  # never a traceback: a bug or a torch error still ends in one line
            fail(f"{src}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            failed += 1
    return 1 if failed else 0


def read_file(path: Path) -> bytes:
    if path.is_dir():
        raise CodecError("is a folder")
    if path.stat().st_size > 4 * container.MAX_PIXELS:
        raise ContainerError("too large to be a TCM file")
    return path.read_bytes()


def compress_files(codec: Codec, inputs: list[Path], out: Path) -> int:
    outputs = plan_outputs(inputs, out, ".tcm")

    def job(src: Path, dst: Path) -> None:
        notes: list[str] = []
        data = codec.encode(read_image(src, notes))
        for note in notes:
            print(note, file=sys.stderr)
        write_atomic(dst, lambda f: f.write(data))

    return run_batch(inputs, outputs, job)


def decompress_files(codec: Codec, inputs: list[Path], out: Path) -> int:
    outputs = plan_outputs(inputs, out, ".png")

    def job(src: Path, dst: Path) -> None:
        fmt = image_format(dst)
        image = codec.decode(read_file(src))
        write_atomic(dst, lambda f: image.save(f, format=fmt))

    return run_batch(inputs, outputs, job)


def describe(header: Header, file_size: int) -> str:
    payload = sum(z + y for z, y in header.lengths)
    left, right, top, bottom = header.padding
    hp, wp = header.padded_size
    lines = [
        f"format version  {header.version}",
        f"weights id      {header.weights_id.hex()}",
        f"image size      {header.width}x{header.height}",
        f"padding         left {left}, right {right}, top {top}, bottom {bottom} (coded {wp}x{hp})",
        f"tiles           {len(header.lengths)} of at most {header.tile}x{header.tile}",
        f"stream bytes    z {sum(z for z, _ in header.lengths)}, y {sum(y for _, y in header.lengths)}",
        f"latent crc      {header.latent_crc:08x}",
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
        except (CodecError, ContainerError, OSError) as e:
            fail(f"{src}: {e}")


# ------------------------------------------------------------ command line
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"codec: error: {message} (see --help)\n")


def tile_side(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value % container.PAD_MULTIPLE or not container.PAD_MULTIPLE <= value <= container.MAX_TILE:
        raise argparse.ArgumentTypeError(f"must be a multiple of 128 in 128..{container.MAX_TILE}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="codec.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    default_ck = os.environ.get(CHECKPOINT_ENV)
    c = sub.add_parser("compress", help="images -> .tcm files")
    c.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE")
    c.add_argument("out", type=Path, metavar="OUT")
    c.add_argument("--checkpoint", "-c", default=default_ck, help=f"weights (default: ${CHECKPOINT_ENV})")
    c.add_argument("--tile", type=tile_side, default=DEFAULT_TILE,
                   help=f"code images whose padded side exceeds this in tiles of this side (default {DEFAULT_TILE})")
    d = sub.add_parser("decompress", help=".tcm files -> images")
    d.add_argument("inputs", nargs="+", type=Path, metavar="FILE")
    d.add_argument("out", type=Path, metavar="OUT")
    d.add_argument("--checkpoint", "-c", default=default_ck, help=f"weights (default: ${CHECKPOINT_ENV})")
    i = sub.add_parser("info", help="print the header of .tcm files")
    i.add_argument("inputs", nargs="+", type=Path, metavar="FILE")
    return parser


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through write_atomic, which removes its temporary file


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # large activations reuse freed memory instead of faulting pages in
    try:
        if args.command == "info":
            return info_files(args.inputs)
        if not args.checkpoint:
            if args.command == "decompress":
                needed_ids(args.inputs)
                return 1
            fail(f"compress needs --checkpoint CK (or {CHECKPOINT_ENV})")
            return 2
        try:
            codec = Codec.load(args.checkpoint, getattr(args, "tile", DEFAULT_TILE))
        except CodecError as e:
            fail(str(e))
            return 2
        if args.command == "compress":
            return compress_files(codec, args.inputs, args.out)
        return decompress_files(codec, args.inputs, args.out)
    except CodecError as e:
        fail(str(e))
        return 2
    except OSError as e:
        fail(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return 2
    except KeyboardInterrupt:
        fail("interrupted")
        return 130


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
