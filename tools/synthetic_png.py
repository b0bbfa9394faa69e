"""Write a large, smooth synthetic RGB PNG row by row, in memory bounded by a row.

    .venv/bin/python tools/synthetic_png.py WIDTH HEIGHT OUT.png

For measuring the file codec's memory on images far larger than a photograph
(docs/format.md, Memory): Pillow would hold the whole image to save it, which
is the very cost being measured.  The content is slow colour waves, which the
codec and PNG's ``Sub`` filter both code compactly.
"""

from __future__ import annotations

import argparse
import struct
import sys
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils.files import atomic_write  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Bytes of compressed data per IDAT chunk.
CHUNK = 1 << 20


def smooth_rows(width: int, height: int) -> Iterator[np.ndarray]:
    """Each row of the image as (width, 3) uint8: three slow waves across the whole frame."""
    u = np.arange(width, dtype=np.float64) / width
    for y in range(height):
        v = y / height
        rgb = (128 + 100 * np.sin(2 * np.pi * (1.5 * u + 0.5 * v)),
               128 + 100 * np.cos(2 * np.pi * (0.7 * u - 1.2 * v)),
               255 * (u + v) / 2)
        yield np.round(np.stack(rgb, axis=-1)).clip(0, 255).astype(np.uint8)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, width: int, height: int) -> None:
    """An 8-bit RGB PNG, each row filtered with ``Sub`` (the difference to the pixel on its left)."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        f.write(PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        z, pending = zlib.compressobj(9), bytearray()
        for row in smooth_rows(width, height):
            flat = row.reshape(-1)
            sub = flat.copy()
            sub[3:] -= flat[:-3]  # uint8 arithmetic wraps, as the filter wants
            pending += z.compress(b"\x01" + sub.tobytes())
            while len(pending) >= CHUNK:
                f.write(chunk(b"IDAT", bytes(pending[:CHUNK])))
                del pending[:CHUNK]
        pending += z.flush()
        f.write(chunk(b"IDAT", bytes(pending)) + chunk(b"IEND", b""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("width", type=int)
    parser.add_argument("height", type=int)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if not (1 <= args.width <= 2**31 - 1 and 1 <= args.height <= 2**31 - 1):
        parser.error("width and height must be 1..2^31-1")
    write_png(args.out, args.width, args.height)
    print(f"{args.out}: {args.width}x{args.height}, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
