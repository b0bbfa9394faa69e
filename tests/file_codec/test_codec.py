"""The codec library: round trips, tiles, weights ids, a drifted decoder (file_codec/codec.py)."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from datasets import to_image, to_tensor
import file_codec.codec as codec_module
from file_codec import Codec, CodecError, container, weights_id
from file_codec.container import Header
from models import Coder, CodingMode
from tests.helpers import codec_checkpoint, noise_image, refix_crc, tiny_tcm
from utils.padding import PADDINGS, crop


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return codec_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pth")


@pytest.fixture(scope="module")
def tcm(ck) -> Codec:
    return Codec.load(ck)


@pytest.fixture(scope="module")
def small(tcm) -> tuple:
    image = noise_image(20, 30, seed=11)
    return image, tcm.encode(image)


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("height,width", [(1, 1), (130, 3)])
def test_round_trip_sizes(tcm, height, width):
    decoded = tcm.decode(tcm.encode(noise_image(height, width)))
    assert decoded.size == (width, height) and decoded.mode == "RGB"


@pytest.mark.parametrize("padding", ["zero", "replicate"])
@pytest.mark.parametrize("entropy", ["float64", "float32"])
def test_tiles_are_the_models_bitstream_and_reconstruction(tcm, entropy, padding):
    """Each tile is the model's bitstream in the coding mode (float32: TCM.compress's), and the file decodes
    to the model's image (float32: TCM.decompress's).

    Like with like: the two entropy arithmetics compute the coder's inputs
    differently, with results that may differ in the last bits on some
    CPUs, so each is compared with itself.
    """
    image = noise_image(100, 200, seed=3)
    data = Codec(tcm.net, tcm.weights_id, tile=128, mode=f"{entropy}/float32", padding=padding).encode(image)
    header, streams = container.parse(data)
    assert (header.height, header.width, header.tile, header.entropy) == (100, 200, 128, entropy)
    assert container.PADDING_NAMES[header.padding_mode] == padding
    x, padding = PADDINGS[padding](to_tensor(image), 128)  # 128x256: two tiles, each coded as the model codes it
    model = tcm.net if entropy == "float32" else Coder(tcm.net, CodingMode(entropy, "float32"))
    expected = torch.zeros_like(x)
    for (t, l, th, tw), (z, y) in zip(header.tiles(), streams, strict=True):
        out = model.compress(x[..., t : t + th, l : l + tw])
        assert (z, y) == (out["strings"][1][0], out["strings"][0][0])
        decoded = model.decompress(out["strings"], out["shape"])
        expected[..., t : t + th, l : l + tw] = decoded["x_hat"]
    decoded = tcm.decode(data)  # the tile side and the entropy arithmetic are read off the file
    assert decoded.size == (200, 100)
    assert np.array_equal(np.asarray(decoded), np.asarray(to_image(crop(expected, padding))))


def test_weights_id_ignores_file_format(tmp_path, tcm, small):
    net = tiny_tcm()  # the same weights as ``ck``, saved as a training checkpoint, tables not built
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "optimizer": {}, "epoch": 7}, tmp_path / "train.pth.tar")
    training = Codec.load(tmp_path / "train.pth.tar")
    assert training.weights_id == tcm.weights_id
    assert training.decode(small[1]).tobytes() == tcm.decode(small[1]).tobytes()
    assert weights_id(tiny_tcm(seed=1)) != tcm.weights_id


def test_drifted_decoder_reports_a_mismatch(tcm, small):
    drifted = copy.deepcopy(tcm.net)
    with torch.no_grad():  # a decoder whose scale arithmetic differs from the encoder's
        drifted.entropy_model.cc_scale_transforms[2][-1].bias.add_(0.5)
    with pytest.raises(CodecError, match="latent checksum mismatch"):
        Codec(drifted, tcm.weights_id).decode(small[1])


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def version_1_file(weights: bytes, height: int, width: int, tile: int, streams: list, latent_crc: int) -> bytes:
    """A version-1 file byte by byte as file_codec/container.py's docstring lays it out, without the writer:
    magic, version 1, weights id, height and width (LEB128), centred padding top and left, tile / 128, each
    tile's z and y lengths (LEB128), the latent crc, the file crc (CRC-32 of all bytes above and the payload),
    then each tile's z and y streams."""
    import struct
    import zlib

    padded = lambda side: -(-side // 128) * 128  # noqa: E731
    head = b"TCM\x89" + bytes([1]) + weights + _leb128(height) + _leb128(width)
    head += bytes([(padded(height) - height) // 2, (padded(width) - width) // 2, tile // 128])
    head += b"".join(_leb128(len(z)) + _leb128(len(y)) for z, y in streams) + struct.pack(">I", latent_crc)
    payload = b"".join(z + y for z, y in streams)
    return head + struct.pack(">I", zlib.crc32(head + payload)) + payload


def test_a_version_1_file_still_decodes_as_before(tcm):
    """Version 1 (no tables id, no entropy byte: the float32 path): a file laid out by hand from the documented
    layout, in two tiles, decodes to the image its streams hold; a damaged byte is refused."""
    image = noise_image(40, 200, seed=12)
    float32 = Codec(tcm.net, tcm.weights_id, tile=128, mode=CodingMode.PUBLISHED, version=2)
    v2 = float32.encode(image)
    header, streams = container.parse(v2)
    assert len(streams) == 2
    v1 = version_1_file(tcm.weights_id, 40, 200, 128, streams, header.latent_crc)
    parsed = container.parse(v1)[0]
    assert (parsed.version, parsed.entropy, parsed.tables_id, parsed.lengths) == (1, "float32", b"", header.lengths)
    assert tcm.decode(v1).tobytes() == float32.decode(v2).tobytes()
    with pytest.raises(CodecError, match="^latent checksum mismatch"):  # the latent crc is checked
        tcm.decode(version_1_file(tcm.weights_id, 40, 200, 128, streams, header.latent_crc ^ 1))


def test_float64_and_float32_files_say_which_entropy_arithmetic_made_them(tcm):
    image = noise_image(40, 70, seed=13)
    float64, float32 = tcm.encode(image), Codec(tcm.net, tcm.weights_id, mode=CodingMode.PUBLISHED).encode(image)
    assert container.parse(float64)[0].entropy == "float64" and container.parse(float32)[0].entropy == "float32"
    assert (float64[15], float32[15]) == (1, 0)  # the entropy path byte: 1 float64, 0 float32, as before
    for data in (float64, float32):  # each decodes with the arithmetic its header names
        assert tcm.decode(data).size == (70, 40)


def test_other_coding_tables_are_refused_naming_both(tcm, small):
    other = copy.deepcopy(tcm.net)
    other.entropy_bottleneck._quantized_cdf[0, 1] += 1  # the same weights, other tables
    codec = Codec(other, tcm.weights_id)
    assert codec.tables_id != tcm.tables_id
    with pytest.raises(CodecError, match=f"made with coding tables {tcm.tables_id.hex()}.*{codec.tables_id.hex()}"):
        codec.decode(small[1])


# ------------------------------------------------------------------ crafted files: bombs and edited headers
def crafted(tcm: Codec, height: int, width: int, streams_for, version: int = container.VERSION,
            tile: int = 128) -> bytes:
    """A file with this codec's ids claiming ``height`` x ``width`` in ``tile``-pixel tiles, with these
    streams (``streams_for(k)`` of tile k) and a valid file CRC: what someone crafting a file writes."""
    hp, wp = container.padded(height), container.padded(width)
    header = Header(tcm.weights_id, height, width, (hp - height) // 2, (wp - width) // 2, tile, version=version,
                    tables_id=tcm.tables_id, entropy="float64")
    streams = [streams_for(k) for k in range(len(header.tiles()))]
    header.tile_crcs = [0] * len(streams) if version >= 3 else []
    return container.pack(header, streams)


@pytest.fixture
def tile_decodes(monkeypatch) -> list:
    """The tiles the decoder gets to, counted as it decodes them."""
    calls = []
    original = codec_module.decode_tile

    def counting(*args, **kwargs):
        calls.append(args[3:5])
        return original(*args, **kwargs)

    monkeypatch.setattr(codec_module, "decode_tile", counting)
    return calls


@pytest.mark.parametrize("version", [2, 3])
def test_a_bomb_stops_at_its_first_tile(tcm, tile_decodes, version):
    """16 tiles claimed, 8 random bytes a stream: the first tile's z stream runs out at once."""
    rng = random.Random(version)
    data = crafted(tcm, 512, 512, lambda k: (rng.randbytes(8), rng.randbytes(8)), version)
    with pytest.raises(CodecError, match=r"^tile 1 of 16: its z stream ends before its symbols do"):
        tcm.decode(data)
    assert tile_decodes == [(128, 128)]


@pytest.fixture(scope="module")
def wide(tcm) -> tuple[Codec, bytes]:
    """A codec whose scales are about 3 (random weights predict ~0): some bits a latent, as a trained
    model's; and the z stream of a 128x128 tile it coded."""
    net = copy.deepcopy(tcm.net)
    with torch.no_grad():
        for transform in net.entropy_model.cc_scale_transforms:
            transform[-1].bias.add_(3.0)
    codec = Codec(net, tcm.weights_id)
    (z, _), = container.parse(codec.encode(noise_image(128, 128, seed=4)))[1]
    return codec, z


@pytest.mark.parametrize("version", [2, 3])
def test_a_real_z_stream_with_a_crafted_y_stream_stops_in_the_first_slice(wide, tile_decodes, monkeypatch, version):
    wide, z = wide
    rng = random.Random(version)
    data = crafted(wide, 256, 384, lambda k: (z, rng.randbytes(12)), version)
    reads = []
    original = codec_module.BoundedStream.decode_stream

    def counting(reader, *args):
        reads.append(reader.name)
        return original(reader, *args)

    monkeypatch.setattr(codec_module.BoundedStream, "decode_stream", counting)
    with pytest.raises(CodecError, match=r"^tile 1 of 6: its y stream ends before its symbols do, in slice 1 of 5"):
        wide.decode(data)
    assert tile_decodes == [(128, 128)] and reads == ["z", "y"]  # the whole z, then y's first slice only


def test_streams_that_no_rans_coder_writes_are_refused_before_any_decoding(tcm, tile_decodes):
    lengths = [(8, 8), (8, 8), (1, 8)]  # the third tile's z stream: 1 byte (a rANS stream is whole 32-bit words)
    data = crafted(tcm, 128, 384, lambda k: (bytes(lengths[k][0]), bytes(lengths[k][1])))
    with pytest.raises(CodecError, match=r"^tile 3 of 3: its z stream of 1 byte is not a rANS stream"):
        tcm.decode(data)
    assert tile_decodes == []


def test_files_over_the_pixel_limit_are_refused_before_decoding(tcm, tile_decodes):
    big = crafted(tcm, 8193, 8192, lambda k: (bytes(8), bytes(8)), tile=2048)  # 2**26 + 8192 pixels
    assert tcm.max_pixels == 2**26
    with pytest.raises(CodecError, match=f"8192x8193 image, {8193 * 8192} pixels, over the limit of {2**26} .*"
                                         f"pass --max-pixels {8193 * 8192}$"):
        tcm.decode(big)
    assert tile_decodes == []
    image = noise_image(20, 30, seed=2)
    data = tcm.encode(image)
    with pytest.raises(CodecError, match="30x20 image, 600 pixels, over the limit of 599"):
        Codec(tcm.net, tcm.weights_id, max_pixels=599).decode(data)
    assert Codec(tcm.net, tcm.weights_id, max_pixels=600).decode(data).size == (30, 20)


def _edit(data: bytes, pos: int, value: int) -> bytes:
    return refix_crc(data[:pos] + bytes([value]) + data[pos + 1 :], container.header_size(container.parse(data)[0]))


#: Version 3's and 4's header bytes: magic 4, version 1, weights id 6, tables id 4, then these.
PATH_BYTE, PADDING_BYTE, HEIGHT_BYTE = 15, 16, 17


@pytest.mark.parametrize("edit,value", [("height", 19), ("entropy path", container.ENTROPY_BYTES["float32"]),
                                        ("padding", container.PAD_ZERO), ("tile", 8)])
def test_a_header_edit_that_keeps_a_valid_geometry_is_refused(tcm, small, tile_decodes, edit, value):
    """20 -> 19 rows keeps the centred padding (54 rows above); the path, padding and tile bytes are
    plausible values: only the tile crc, which covers the header, tells."""
    data = small[1]
    assert (data[4], data[HEIGHT_BYTE], data[PATH_BYTE], data[PADDING_BYTE]) == (container.VERSION, 20, 1,
                                                                                 container.PAD_REPLICATE)
    pos = {"height": HEIGHT_BYTE, "entropy path": PATH_BYTE, "padding": PADDING_BYTE,
           "tile": len(container.fixed_part(container.parse(data)[0])) - 1}[edit]
    edited = _edit(data, pos, value)
    container.parse(edited)  # a valid container
    with pytest.raises(CodecError, match="^latent checksum mismatch"):
        tcm.decode(edited)
    assert len(tile_decodes) == 1


def test_a_version_2_size_whose_streams_are_too_short_stops_at_the_stream(tcm, tile_decodes):
    """Width 30 -> 200 (padded 128 -> 256, left padding centred again): the streams of a 128x128 tile
    are read as a 128x256 one, and run out."""
    v2 = Codec(tcm.net, tcm.weights_id, version=2)
    header, streams = container.parse(v2.encode(noise_image(20, 30, seed=11)))
    header.width, header.pad_left = 200, 28
    with pytest.raises(CodecError, match="^its z stream ends before its symbols do"):
        tcm.decode(container.pack(header, streams))
    assert tile_decodes == [(128, 256)]


def test_version_2_is_still_written_on_request(tcm, small):
    v2 = Codec(tcm.net, tcm.weights_id, version=2)
    data = v2.encode(small[0])
    header, _ = container.parse(data)
    assert (header.version, header.padding_mode) == (2, container.PAD_ZERO)
    assert container.header_size(header) == container.header_size(container.parse(small[1])[0]) - 1
    assert tcm.decode(data).size == small[0].size
    with pytest.raises(CodecError, match="version 2 records no padding"):
        Codec(tcm.net, tcm.weights_id, version=2, padding="replicate")
