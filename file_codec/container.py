"""The ``.tcm`` file container: header layout, versioning, checksums, bounds.

Version 4, all integers unsigned; "varint" is LEB128 (7 bits a byte, low
first, at most 5 bytes)::

    magic        4 bytes   b"TCM\\x89"
    version      1 byte    4
    weights id   6 bytes   first bytes of the sha256 of the model's parameters
    tables id    4 bytes   first bytes of the sha256 of its coding tables (the
                           bottleneck's and the Gaussian CDFs the coder used;
                           with the int8 entropy path, also the integer
                           parameters of the entropy model)
    entropy path 1 byte    the arithmetic of the means and scales (the coding
                           mode's entropy, ``models.coding``): 0 float32 (the
                           published function), 1 float64 (decodes on other
                           machines), 2 int8 (exact integers, decodes on any
                           machine; version 4 only)
    padding      1 byte    what fills the padding: 0 zeros (``utils.padding.pad``, the
                           paper's), 1 the repeated edge pixels
                           (``utils.padding.pad_replicate``)
    height       varint    original image size, 1..MAX_SIDE
    width        varint
    pad top      1 byte    rows of padding above the image: (padded height -
                           height) // 2, the centred padding the encoder uses
    pad left     1 byte    columns left of the image: (padded width - width) // 2
    tile         1 byte    tile side / 128 (the padded image is cut into tiles
                           of this side from its top-left corner; the last
                           row and column of tiles may be smaller)
    per tile, row-major:
      z length   varint    bytes of the hyperprior rANS stream
      y length   varint    bytes of the latent rANS stream
      tile crc   4 bytes   CRC-32 of the header bytes above the first z length,
                           the tile's index (4 bytes, big-endian), and its
                           decoded symbols (z then y, int32 little-endian)
    file crc     4 bytes   CRC-32 of all bytes above and of the payload
    payload                per tile: z stream, y stream

The file CRC is checked before any entropy decoding, so a damaged file never
reaches the C++ rANS decoder.  Each tile crc is checked as soon as that tile's
symbols are decoded, before its synthesis and before the next tile: a crafted
file (its file CRC recomputed) whose streams do not hold what the header
claims stops at its first inconsistent tile, and since the crc covers the
header, an edited size, padding, entropy path or tile side is refused too.  It
is also the decoder's self-check: a decoder whose arithmetic drifted from the
encoder's reports it instead of writing a wrong image.  Padding right/bottom
follow from the size: padded sides are the next multiples of 128.  A Kodak
file carries 37 header bytes.

Version 3 (still read and written: ``Codec(..., version=3)``) is version 4
without the int8 entropy path.
Version 2 (still read and written: ``Codec(..., version=2)``) has no padding
byte (zeros) and, instead of the tile crcs, one ``latent crc`` (4 bytes,
after the last y length) of every decoded symbol, tile by tile, checked after
the last tile; it does not cover the header.  Version 1 (still read) is
version 2 without tables id and entropy path: its files were coded with the
float32 path.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

from utils.cli import ToolError
from utils.padding import PAD_MULTIPLE

MAGIC = b"TCM\x89"
VERSION = 4
VERSIONS = (1, 2, 3, 4)
ID_BYTES = 6
TABLES_ID_BYTES = 4
#: The entropy path byte (after the tables id) of each entropy arithmetic (``models.coding.CodingMode.entropy``):
#: the only place where the byte and the name meet.
ENTROPY_BYTES = {"float32": 0, "float64": 1, "int8": 2}
ENTROPY_NAMES = {code: name for name, code in ENTROPY_BYTES.items()}
#: The first format version that has each entropy path.
ENTROPY_SINCE = {"float32": 2, "float64": 2, "int8": 4}
#: What ``codec.py info`` says of each.
ENTROPY_NOTES = {"float32": "the published function", "float64": "decodes on other machines",
                 "int8": "exact integers, decodes on any machine"}
#: Paddings (version 3's byte after the entropy path; versions 1 and 2: zeros), by ``utils.PADDINGS`` name.
PAD_ZERO, PAD_REPLICATE = 0, 1
PADDING_NAMES = {PAD_ZERO: "zero", PAD_REPLICATE: "replicate"}
#: Bounds that a header must satisfy before anything is allocated for it.
MAX_SIDE = 65_535
MAX_PIXELS = 2**27  # ~134 Mpx: an 11585 x 11585 image
#: The most pixels a file may claim before the codec refuses to decode it, or an image before the codec
#: refuses to read it, unless told otherwise (``Codec.max_pixels``, ``codec.py --max-pixels``), as Pillow's
#: ``Image.MAX_IMAGE_PIXELS`` guards against decompression bombs: 67 Mpx holds an 8192x8192 image or a
#: 61-megapixel camera's 9504x6336, and keeps the image held whole (8-bit RGB, 4 bytes a pixel in Pillow)
#: at 0.25 GiB at most.
DEFAULT_MAX_PIXELS = 2**26
MAX_TILE = 255 * PAD_MULTIPLE

_FIXED = struct.Struct(">4sB6s")  # magic, version, weights id
_V2 = struct.Struct(">4sB")  # tables id, entropy path
_CRC = struct.Struct(">I")


class ContainerError(ToolError):
    """A file that is not a valid TCM container; the message is one line."""


@dataclass
class Header:
    weights_id: bytes
    height: int
    width: int
    pad_top: int
    pad_left: int
    tile: int  # tile side in pixels, a multiple of 128
    lengths: list[tuple[int, int]] = field(default_factory=list)  # (z, y) bytes per tile
    latent_crc: int = 0  # versions 1 and 2
    version: int = VERSION
    tables_id: bytes = b""  # version 2 and later
    entropy: str = "float32"  # the means' and scales' arithmetic (an ENTROPY_BYTES name); version 1: float32
    padding_mode: int = PAD_ZERO  # version 3; before: always zeros
    tile_crcs: list[int] = field(default_factory=list)  # version 3: one per tile (see tile_crc)

    @property
    def padded_size(self) -> tuple[int, int]:
        return padded(self.height), padded(self.width)

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom), as ``utils.padding.crop`` takes it."""
        hp, wp = self.padded_size
        return (self.pad_left, wp - self.width - self.pad_left, self.pad_top, hp - self.height - self.pad_top)

    def tiles(self) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of each tile in the padded image, row-major."""
        return tile_grid(*self.padded_size, self.tile)


def padded(side: int) -> int:
    return -(-side // PAD_MULTIPLE) * PAD_MULTIPLE


def tile_grid(hp: int, wp: int, tile: int) -> list[tuple[int, int, int, int]]:
    return [
        (top, left, min(tile, hp - top), min(tile, wp - left))
        for top in range(0, hp, tile)
        for left in range(0, wp, tile)
    ]


# ---------------------------------------------------------------- varints
def put_varint(n: int) -> bytes:
    if n < 0 or n >= 1 << 35:
        raise ValueError(f"varint out of range: {n}")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def get_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """(value, next position); at most 5 bytes, no redundant trailing zero bytes."""
    value = 0
    for i in range(5):
        if pos + i >= len(data):
            raise ContainerError(f"truncated header (in {what})")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise ContainerError(f"corrupt header: over-long {what}")
            return value, pos + i + 1
    raise ContainerError(f"corrupt header: {what} is not a valid length")


# ---------------------------------------------------------------- checks
def tile_side_error(tile: int) -> str | None:
    """Why ``tile`` is not a side a header can record (a multiple of 128 in 128..MAX_TILE), or None: the one
    rule for a file's tiles, ``codec.py --tile`` and ``eval.py --tile``."""
    if tile % PAD_MULTIPLE or not PAD_MULTIPLE <= tile <= MAX_TILE:
        return f"tile side {tile} is not a multiple of {PAD_MULTIPLE} in {PAD_MULTIPLE}..{MAX_TILE}"
    return None


def check_geometry(height: int, width: int, pad_top: int, pad_left: int, tile: int) -> None:
    """Bounds of a header, before anything is allocated; raises ContainerError.

    Every version's encoder padded centred (``utils.padding.pad``), so the top and left
    padding follow from the size: any other value is an edited header, which
    would decode to a shifted image.
    """
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ContainerError(f"corrupt header: image size {width}x{height} out of range")
    if height * width > MAX_PIXELS:
        raise ContainerError(f"image of {width}x{height} pixels exceeds the {MAX_PIXELS} pixel limit")
    why = tile_side_error(tile)
    if why:
        raise ContainerError(f"corrupt header: {why}")
    top, left = (padded(height) - height) // 2, (padded(width) - width) // 2
    if (pad_top, pad_left) != (top, left):
        raise ContainerError(f"corrupt header: padding top {pad_top}, left {pad_left} is not the centred padding "
                             f"of a {width}x{height} image (top {top}, left {left})")


def fixed_part(header: Header) -> bytes:
    """The header's bytes before the first stream length: everything but the tiles' entries."""
    head = bytearray(_FIXED.pack(MAGIC, header.version, header.weights_id))
    if header.version >= 2:
        head += _V2.pack(header.tables_id, ENTROPY_BYTES[header.entropy])
    if header.version >= 3:
        head.append(header.padding_mode)
    head += put_varint(header.height) + put_varint(header.width)
    head += bytes((header.pad_top, header.pad_left, header.tile // PAD_MULTIPLE))
    return bytes(head)


def tile_crc(header: Header, index: int, symbols: bytes) -> int:
    """Version 3's check of tile ``index``: CRC-32 of the fixed header, the index and the tile's symbols.

    The encoder computes it from the symbols it coded, the decoder from the
    ones it decoded, both before the tile's synthesis.
    """
    return zlib.crc32(symbols, zlib.crc32(_CRC.pack(index), zlib.crc32(fixed_part(header))))


# ---------------------------------------------------------------- pack / parse
def pack(header: Header, streams: list[tuple[bytes, bytes]]) -> bytes:
    """The file bytes: header (lengths filled in from ``streams``) then payload."""
    check_geometry(header.height, header.width, header.pad_top, header.pad_left, header.tile)
    if len(header.weights_id) != ID_BYTES:
        raise ValueError(f"weights id must be {ID_BYTES} bytes")
    n_tiles = len(header.tiles())
    if len(streams) != n_tiles:
        raise ValueError(f"{len(streams)} streams for {n_tiles} tiles")
    header.lengths = [(len(z), len(y)) for z, y in streams]
    if not all(z and y for z, y in streams):
        raise ValueError("empty stream")
    if header.version not in VERSIONS:
        raise ValueError(f"unknown version {header.version}")
    if header.version >= 2 and (len(header.tables_id) != TABLES_ID_BYTES or header.entropy not in ENTROPY_BYTES):
        raise ValueError("a version-2 header needs a 4-byte tables id and a known entropy path")
    if header.version >= 2 and header.version < ENTROPY_SINCE[header.entropy]:
        raise ValueError(f"format version {header.version} has no {header.entropy} entropy path")
    if header.version >= 3 and (header.padding_mode not in PADDING_NAMES or len(header.tile_crcs) != n_tiles):
        raise ValueError("a version-3 header needs a known padding and one crc per tile")
    if header.version < 3 and header.padding_mode != PAD_ZERO:
        raise ValueError(f"version {header.version} records no padding: it is zeros")
    head = bytearray(fixed_part(header))
    for k, (z, y) in enumerate(streams):
        head += put_varint(len(z)) + put_varint(len(y))
        if header.version >= 3:
            head += _CRC.pack(header.tile_crcs[k])
    if header.version < 3:
        head += _CRC.pack(header.latent_crc)
    payload = b"".join(z + y for z, y in streams)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return bytes(head) + _CRC.pack(crc) + payload


def check_magic(head: bytes) -> None:
    """Refuse bytes that do not begin as a TCM file; the first ``len(MAGIC)`` bytes are enough."""
    if not head:
        raise ContainerError("empty file")
    if head[: len(MAGIC)] != MAGIC:
        raise ContainerError("not a TCM file (bad magic bytes)")


def parse(data: bytes) -> tuple[Header, list[tuple[bytes, bytes]]]:
    """Validate ``data`` completely (bounds, lengths, file CRC) and split it.

    Nothing here decodes entropy-coded data, and nothing is allocated in
    proportion to what the header claims before it is checked against the
    file's actual length.
    """
    check_magic(data)
    if len(data) < _FIXED.size:
        raise ContainerError("truncated header")
    _, version, weights_id = _FIXED.unpack_from(data)
    if version not in VERSIONS:
        newer = "a newer" if version > VERSION else "an unknown"
        raise ContainerError(f"format version {version} is {newer} version; this codec reads versions "
                             f"{', '.join(map(str, VERSIONS))}")
    pos = _FIXED.size
    tables_id, path, padding_mode = b"", ENTROPY_BYTES["float32"], PAD_ZERO
    if version >= 2:
        if pos + _V2.size > len(data):
            raise ContainerError("truncated header")
        tables_id, path = _V2.unpack_from(data, pos)
        pos += _V2.size
        if path not in ENTROPY_NAMES or version < ENTROPY_SINCE[ENTROPY_NAMES[path]]:
            raise ContainerError(f"corrupt header: unknown entropy path {path}")
    if version >= 3:
        if pos >= len(data):
            raise ContainerError("truncated header")
        padding_mode = data[pos]
        pos += 1
        if padding_mode not in PADDING_NAMES:
            raise ContainerError(f"corrupt header: unknown padding {padding_mode}")
    height, pos = get_varint(data, pos, "height")
    width, pos = get_varint(data, pos, "width")
    if pos + 3 > len(data):
        raise ContainerError("truncated header")
    pad_top, pad_left, tile_units = data[pos], data[pos + 1], data[pos + 2]
    pos += 3
    check_geometry(height, width, pad_top, pad_left, tile_units * PAD_MULTIPLE)
    header = Header(weights_id, height, width, pad_top, pad_left, tile_units * PAD_MULTIPLE,
                    version=version, tables_id=tables_id, entropy=ENTROPY_NAMES[path], padding_mode=padding_mode)
    n_tiles = math.ceil(padded(height) / header.tile) * math.ceil(padded(width) / header.tile)
    per_tile = 2 + (_CRC.size if version >= 3 else 0)  # each length takes at least one byte
    if pos + per_tile * n_tiles + _CRC.size * (1 if version >= 3 else 2) > len(data):
        raise ContainerError("truncated header")
    for _ in range(n_tiles):
        z_len, pos = get_varint(data, pos, "stream length")
        y_len, pos = get_varint(data, pos, "stream length")
        if z_len == 0 or y_len == 0:
            raise ContainerError("corrupt header: empty stream")
        header.lengths.append((z_len, y_len))
        if version >= 3:
            if pos + _CRC.size > len(data):
                raise ContainerError("truncated header")
            header.tile_crcs.append(_CRC.unpack_from(data, pos)[0])
            pos += _CRC.size
    if version < 3:
        if pos + _CRC.size > len(data):
            raise ContainerError("truncated header")
        header.latent_crc = _CRC.unpack_from(data, pos)[0]
        pos += _CRC.size
    if pos + _CRC.size > len(data):
        raise ContainerError("truncated header")
    file_crc = _CRC.unpack_from(data, pos)[0]
    pos += _CRC.size
    expected = pos + sum(z + y for z, y in header.lengths)
    if len(data) < expected:
        raise ContainerError(f"truncated file: {len(data)} bytes, the header announces {expected}")
    if len(data) > expected:
        raise ContainerError(f"corrupt file: {len(data) - expected} bytes after the announced end")
    if zlib.crc32(data[pos:], zlib.crc32(data[: pos - 4])) != file_crc:
        raise ContainerError("corrupt file: checksum mismatch (the file was damaged)")
    streams = []
    for z_len, y_len in header.lengths:
        streams.append((data[pos : pos + z_len], data[pos + z_len : pos + z_len + y_len]))
        pos += z_len + y_len
    return header, streams


def header_size(header: Header) -> int:
    """Bytes of the header of a file with these stream lengths (the overhead over the payload)."""
    n = len(fixed_part(header))
    n += sum(len(put_varint(z)) + len(put_varint(y)) for z, y in header.lengths)
    n += _CRC.size * (len(header.lengths) if header.version >= 3 else 1)
    return n + _CRC.size  # the file crc
