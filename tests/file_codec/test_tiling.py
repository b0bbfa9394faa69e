"""Images reach their tiles, and tiles the decoded image, one tile at a time (file_codec/codec.py, utils/padding.py).

The codec once padded the whole image in float32 before cutting tiles, and
decoded into a float32 canvas of the whole padded image; it now pads each
tile on its own and writes each decoded tile into an 8-bit image.  The files
and the decoded pixels must be exactly what the whole-image way gives: the
references below are that way, written out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import to_image, to_tensor
import file_codec.codec as codec_module
from file_codec import Codec, container
from file_codec.codec import PADDING_CODES, decode_tile
from file_codec.container import Header
from tests.helpers import noise_image
from utils.padding import PADDINGS, centred_padding, crop, image_part, padded_region

CONFORMANCE = Path(__file__).resolve().parent.parent / "data" / "conformance"


def whole_image_encode(codec: Codec, image: Image.Image) -> bytes:
    """The file as the codec wrote it before: the whole image padded in float32, then cut into tiles."""
    width, height = image.size
    x, (left, _, top, _) = PADDINGS[codec.padding](to_tensor(image), 128)
    entropy = codec.mode.entropy
    header = Header(codec.weights_id, height, width, top, left, codec.tile, version=codec.version,
                    tables_id=codec.tables_id_for(entropy), entropy=entropy, padding_mode=PADDING_CODES[codec.padding])
    return codec.pack_tiles(header, lambda tile: x[..., tile[0] : tile[0] + tile[2], tile[1] : tile[1] + tile[3]])


def whole_canvas_decode(codec: Codec, data: bytes) -> np.ndarray:
    """The image as the codec decoded it before: every tile into a float32 canvas, cropped, then rounded."""
    header, streams = container.parse(data)
    coder = codec.coder(header.entropy)
    canvas = torch.empty(1, 3, *header.padded_size)
    for (t, l, th, tw), (z, y) in zip(header.tiles(), streams, strict=True):
        canvas[..., t : t + th, l : l + tw] = decode_tile(coder, z, y, th, tw)[0]
    return np.asarray(to_image(crop(canvas, header.padding)))


@pytest.fixture(scope="module")
def small_model() -> Codec:
    """The kept conformance model (N=16): real coding at half a second a tile here."""
    return Codec.load(CONFORMANCE / "model.pth.tar")


def same_file_and_pixels(model: Codec, height: int, width: int, tile: int, version: int, padding: str,
                         entropy: str = "float64") -> None:
    codec = Codec(model.net, model.weights_id, tile=tile, mode=f"{entropy}/float32", version=version, padding=padding)
    image = noise_image(height, width, seed=height + width)
    data = codec.encode(image)
    assert data == whole_image_encode(codec, image)
    assert np.array_equal(np.asarray(codec.decode(data)), whole_canvas_decode(codec, data))


PAIRS = [(4, "replicate"), (4, "zero"), (3, "replicate"), (2, "zero")]


@pytest.mark.parametrize("version,padding", PAIRS)
def test_tile_by_tile_writes_the_bytes_of_whole_image_padding_and_decodes_its_pixels(small_model, version, padding):
    """Two 128-pixel tiles, the second all but 3 columns of padding on both sides."""
    same_file_and_pixels(small_model, 130, 3, 128, version, padding)


def test_tile_by_tile_in_the_int8_entropy_arithmetic(small_model):
    same_file_and_pixels(small_model, 130, 3, 128, 4, "replicate", entropy="int8")


@pytest.mark.slow
@pytest.mark.parametrize("version,padding", PAIRS)
# padding on every side in 6 tiles; no padding at all; tiles of two sizes (the last column 128 wide); one pixel
@pytest.mark.parametrize("height,width,tile", [(140, 260, 128), (256, 128, 128), (200, 520, 256), (1, 1, 128)])
def test_more_tile_layouts_write_the_same_bytes_and_pixels(small_model, version, padding, height, width, tile):
    same_file_and_pixels(small_model, height, width, tile, version, padding)


@pytest.mark.slow
@pytest.mark.parametrize("transforms", ["float32", "bfloat16"])
def test_the_kept_conformance_streams_decode_to_the_pixels_of_the_whole_canvas(transforms):
    """Every stored file, versions 2 to 4, one tile or nine, in both transforms: the same pixels as before."""
    codec = Codec.load(CONFORMANCE / "model.pth.tar", f"float64/{transforms}")
    streams = sorted((CONFORMANCE / "streams").glob("*.tcm"))
    assert len(streams) == 18
    for stream in streams:
        data = stream.read_bytes()
        assert np.array_equal(np.asarray(codec.decode(data)), whole_canvas_decode(codec, data)), stream.name


@pytest.mark.parametrize("mode", ["zero", "replicate"])
def test_a_padded_region_is_that_region_of_the_whole_padded_image(mode):
    """Tiles of several sides, regions wholly in the padding, and an image needing none."""
    for height, width in [(131, 77), (256, 128), (1, 1)]:
        image = noise_image(height, width, seed=5)
        padding = centred_padding(height, width)
        whole, expected_padding = PADDINGS[mode](to_tensor(image), 128)
        assert padding == expected_padding
        hp, wp = whole.shape[-2:]
        regions = [(t, l, min(side, hp - t), min(side, wp - l)) for side in (128, 256)
                   for t in range(0, hp, side) for l in range(0, wp, side)]
        regions += [(200, 100, 56, 28), (0, 110, 3, 18), (0, 0, 2, 3), (0, 0, hp, wp)]
        for t, l, h, w in regions:
            if t + h <= hp and l + w <= wp:
                region = padded_region(image, padding, mode, (t, l, h, w))
                assert torch.equal(to_tensor(region), whole[..., t : t + h, l : l + w]), (height, width, t, l, h, w)


def test_the_image_part_of_a_region_is_what_crop_keeps():
    padding, size = centred_padding(131, 77), (77, 131)
    mask = torch.zeros(1, 1, 256, 128)
    for region in [(0, 0, 128, 128), (128, 0, 128, 128), (0, 0, 256, 128), (0, 0, 50, 20), (250, 120, 6, 8)]:
        t, l, h, w = region
        found = np.zeros((131, 77), dtype=bool)
        part = image_part(padding, size, region)
        if part is not None:
            rows, cols, (x, y) = part
            found[y : y + rows.stop - rows.start, x : x + cols.stop - cols.start] = True
        mask.zero_()
        mask[..., t : t + h, l : l + w] = 1
        assert np.array_equal(found, crop(mask, padding)[0, 0].numpy().astype(bool)), region


def test_only_tiles_are_ever_held_in_float(small_model, monkeypatch):
    """A 1000x700 image in 128-pixel tiles: every float32 conversion, either way, is at most a tile.

    The coding of each tile is replaced by a stand-in (this is about how
    pixels reach the tiles and the output); before, the whole image was
    converted to float32 and padded whole (12 bytes a pixel, twice), and
    decoded into a float32 canvas of the whole padded image.
    """
    converted = []

    def to_tensor_seen(image):
        x = to_tensor(image)
        converted.append(x.shape[-2:])
        return x

    def to_image_seen(x):
        converted.append(x.shape[-2:])
        return to_image(x)

    monkeypatch.setattr(codec_module, "to_tensor", to_tensor_seen)
    monkeypatch.setattr(codec_module, "to_image", to_image_seen)
    monkeypatch.setattr(codec_module, "encode_tile", lambda coder, x: (bytes(8), bytes(8), b""))
    monkeypatch.setattr(codec_module, "decode_tile",
                        lambda coder, z, y, h, w, check=None: (torch.rand(1, 3, h, w), b""))
    codec = Codec(small_model.net, small_model.weights_id, tile=128)
    data = codec.encode(noise_image(700, 1000))
    assert len(converted) == 6 * 8 and max(h * w for h, w in converted) == 128 * 128
    converted.clear()
    assert codec.decode(data).size == (1000, 700)
    assert len(converted) == 6 * 8 and max(h * w for h, w in converted) <= 128 * 128


def test_compress_refuses_an_image_no_file_can_hold_before_decoding_it(small_model, tmp_path, monkeypatch, capsys):
    import codec
    from PIL import ImageFile

    Image.new("RGB", (container.MAX_SIDE + 1, 1)).save(tmp_path / "wide.png")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels decoded"))
    monkeypatch.setattr(codec_module.Codec, "load", classmethod(lambda cls, *args, **kwargs: small_model))
    assert codec.main(["compress", str(tmp_path / "wide.png"), str(tmp_path / "wide.tcm"), "-c", "unused"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"codec.py: error: {tmp_path / 'wide.png'}: image of 65536x1 is larger than this codec supports "
        f"(at most 65535 pixels a side and {container.MAX_PIXELS} pixels)")
    assert not (tmp_path / "wide.tcm").exists()
