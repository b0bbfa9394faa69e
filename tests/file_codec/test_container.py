"""The .tcm container: layout round trips, and every kind of damage refused before decoding."""

from __future__ import annotations

import random
import struct

import pytest

from file_codec import container
from file_codec.container import ContainerError, Header
from tests.helpers import refix_crc

WID = bytes(range(1, 1 + container.ID_BYTES))
TID = bytes(range(200, 200 + container.TABLES_ID_BYTES))


def make_file(height=100, width=150, tile=2048, seed=0, version=container.VERSION, entropy="float64"
              ) -> tuple[Header, list[tuple[bytes, bytes]], bytes]:
    rng = random.Random(seed)
    hp, wp = container.padded(height), container.padded(width)
    v2 = dict(tables_id=TID, entropy=entropy) if version >= 2 else {}
    header = Header(WID, height, width, (hp - height) // 2, (wp - width) // 2, tile, version=version, **v2)
    if version >= 3:
        header.padding_mode = container.PAD_REPLICATE
        header.tile_crcs = [rng.getrandbits(32) for _ in header.tiles()]
    else:
        header.latent_crc = 0xDEADBEEF
    streams = [
        (rng.randbytes(rng.randint(1, 40)), rng.randbytes(rng.randint(1, 90))) for _ in header.tiles()
    ]
    return header, streams, container.pack(header, streams)


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**35 - 1])
def test_varint_round_trip(n):
    b = container.put_varint(n)
    assert container.get_varint(b + b"rest", 0, "x") == (n, len(b))


@pytest.mark.parametrize("bad", [b"\x80\x00", b"\x80\x80\x80\x80\x80\x01", b"\x80"])
def test_varint_rejects_overlong_and_truncated(bad):
    with pytest.raises(ContainerError):
        container.get_varint(bad, 0, "length")


@pytest.mark.parametrize("version", container.VERSIONS)
@pytest.mark.parametrize("height,width,tile", [(1, 1, 128), (100, 150, 2048), (300, 500, 256), (700, 129, 128)])
def test_pack_parse_round_trip(height, width, tile, version):
    header, streams, data = make_file(height, width, tile, version=version)
    parsed, got = container.parse(data)
    assert got == streams
    assert parsed == header
    assert len(data) - sum(len(z) + len(y) for z, y in streams) == container.header_size(parsed)


def test_tiles_cover_the_padded_image_once():
    hp, wp = 384, 640
    covered = [[0] * wp for _ in range(hp)]
    for t, l, th, tw in container.tile_grid(hp, wp, 256):
        assert th % 128 == 0 and tw % 128 == 0
        for r in range(t, t + th):
            for c in range(l, l + tw):
                covered[r][c] += 1
    assert all(v == 1 for row in covered for v in row)


def test_header_of_a_kodak_file_is_at_most_37_bytes():
    # 768x512, one tile; stream lengths of the order a TCM gives on Kodak (z < 16 KiB, y < 2 MiB)
    header = Header(WID, 512, 768, 0, 0, 2048, lengths=[(16383, 2**21 - 1)], tables_id=TID)
    assert container.header_size(header) <= 37


def test_a_version_2_header_needs_its_tables_id_and_a_known_path():
    header, streams, _ = make_file()
    for bad in (dict(tables_id=b""), dict(entropy="float16")):
        with pytest.raises(ValueError, match="version-2 header"):
            container.pack(Header(**{**header.__dict__, "lengths": [], **bad}), streams)


def test_the_entropy_byte_is_the_coding_modes_entropy():
    """One map between the byte files carry (0 float32 and 1 float64 since version 2, 2 int8 since version 4) and
    CodingMode.entropy."""
    from models.coding import CodingMode

    assert container.ENTROPY_BYTES == {"float32": 0, "float64": 1, "int8": 2}
    assert set(container.ENTROPY_BYTES) == set(CodingMode.ENTROPIES)
    for entropy, byte in container.ENTROPY_BYTES.items():
        data = make_file(entropy=entropy)[2]
        assert data[4 + 1 + container.ID_BYTES + container.TABLES_ID_BYTES] == byte
        assert container.parse(data)[0].entropy == entropy
    assert container.parse(make_file(version=1)[2])[0].entropy == "float32"  # version 1: no byte, float32
    header, streams, _ = make_file(version=3)
    with pytest.raises(ValueError, match="format version 3 has no int8"):
        container.pack(Header(**{**header.__dict__, "entropy": "int8"}), streams)


def test_padding_is_what_crop_needs():
    header, _, _ = make_file(100, 150)
    left, right, top, bottom = header.padding
    assert left + right + 150 == 256 and top + bottom + 100 == 128 and min(header.padding) >= 0


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a TCM file"),
        (b"TCM", "not a TCM file"),
        (container.MAGIC, "truncated"),
    ],
)
def test_foreign_and_empty(data, message):
    with pytest.raises(ContainerError, match=message):
        container.parse(data)


@pytest.mark.parametrize("version", [0, 5, 255])
def test_other_versions_refused_by_number(version):
    _, _, data = make_file()
    data = data[:4] + bytes([version]) + data[5:]
    with pytest.raises(ContainerError, match=f"format version {version}"):
        container.parse(data)


def test_every_truncation_refused():
    _, _, data = make_file(300, 500, 256)
    for n in range(len(data)):
        with pytest.raises(ContainerError):
            container.parse(data[:n])


def test_every_single_bit_flip_refused():
    _, _, data = make_file()
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(ContainerError):
            container.parse(bytes(flipped))


def test_trailing_bytes_refused():
    _, _, data = make_file()
    with pytest.raises(ContainerError, match="after the announced end"):
        container.parse(data + b"\0")


def _with_geometry(height: int, width: int, pad_top: int, pad_left: int, tile_units: int) -> bytes:
    """A file whose header claims this geometry, with a valid CRC (as a crafted file would have)."""
    head = struct.pack(">4sB6s", container.MAGIC, 1, WID) + container.put_varint(height) + container.put_varint(width)
    head += bytes((pad_top, pad_left, tile_units)) + b"\x01\x01" + struct.pack(">I", 0)
    return refix_crc(head + bytes(4) + b"zy", len(head) + 4)


@pytest.mark.parametrize(
    "geometry,message",
    [
        ((0, 10, 0, 0, 1), "out of range"),
        ((10, 0, 0, 0, 1), "out of range"),
        ((65_535, 65_535, 0, 0, 255), "pixel limit"),
        ((100, 100, 100, 0, 1), "padding"),
        ((100, 100, 0, 0, 0), "tile side"),
    ],
)
def test_geometry_bounded_before_allocation(geometry, message):
    with pytest.raises(ContainerError, match=message):
        container.parse(_with_geometry(*geometry))


def test_tile_count_checked_against_file_length():
    # 8192x8192 in 128-pixel tiles claims 4096 tiles: refused from the length alone
    with pytest.raises(ContainerError, match="truncated"):
        container.parse(_with_geometry(8192, 8192, 0, 0, 1))


def test_crafted_lengths_must_match_the_file():
    header, streams, data = make_file()
    n = container.header_size(header)
    z_len = header.lengths[0][0]
    pos = data.index(container.put_varint(z_len) + container.put_varint(header.lengths[0][1]), 13)
    longer = bytearray(data)
    longer[pos] = z_len + 1  # z claims one byte more than the file holds
    with pytest.raises(ContainerError, match="truncated file"):
        container.parse(refix_crc(bytes(longer), n))


def _edited(data: bytes, pos: int, value: int) -> bytes:
    """``data`` with one header byte set to ``value`` and the file CRC recomputed (a crafted edit)."""
    n = container.header_size(container.parse(data)[0])
    return refix_crc(data[:pos] + bytes([value]) + data[pos + 1 :], n)


@pytest.mark.parametrize("version", container.VERSIONS)
@pytest.mark.parametrize("field", ["pad top", "pad left", "height"])
def test_an_edited_size_or_padding_that_shifts_the_image_is_refused(version, field):
    header, _, data = make_file(100, 150, version=version)
    top = len(container.fixed_part(header)) - 3  # pad top, pad left, tile follow the varint sizes
    if field == "height":  # 100 -> 90: its centred padding is 19 rows, the file says 14
        pos, value = data.index(container.put_varint(100) + container.put_varint(150), 11), 90
    else:
        pos = top + (field == "pad left")
        value = data[pos] + 1
    with pytest.raises(ContainerError, match="not the centred padding"):
        container.parse(_edited(data, pos, value))


def test_an_unknown_padding_is_refused():
    _, _, data = make_file()
    pos = 4 + 1 + container.ID_BYTES + container.TABLES_ID_BYTES + 1  # after magic, version, ids, entropy path
    assert data[pos] == container.PAD_REPLICATE
    with pytest.raises(ContainerError, match="unknown padding 2"):
        container.parse(_edited(data, pos, 2))


def test_versions_before_3_record_no_padding_and_3_needs_a_crc_per_tile():
    header, streams, _ = make_file(version=2)
    header.padding_mode = container.PAD_REPLICATE
    with pytest.raises(ValueError, match="records no padding"):
        container.pack(header, streams)
    header, streams, _ = make_file(300, 500, 256)
    header.tile_crcs.pop()
    with pytest.raises(ValueError, match="one crc per tile"):
        container.pack(header, streams)


def test_the_tile_crc_binds_the_header_and_the_tile_index():
    header, _, _ = make_file(300, 500, 256)
    symbols = bytes(range(40))
    crc = container.tile_crc(header, 0, symbols)
    edits = [dict(height=299), dict(width=490, pad_left=11), dict(tile=384), dict(entropy="float32"),
             dict(padding_mode=container.PAD_ZERO), dict(tables_id=bytes(4)), dict(weights_id=bytes(6))]
    for edit in edits:
        assert container.tile_crc(Header(**{**header.__dict__, **edit}), 0, symbols) != crc, edit
    assert container.tile_crc(header, 1, symbols) != crc
    assert container.tile_crc(header, 0, symbols[:-1] + b"\xff") != crc
    assert container.tile_crc(Header(**header.__dict__), 0, symbols) == crc
