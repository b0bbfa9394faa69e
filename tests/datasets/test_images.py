"""Reading any image as 8-bit RGB, and saying what the conversion lost (datasets/images.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import ImageReadError, open_rgb, to_image, to_tensor


def _read(path) -> tuple[Image.Image, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = open_rgb(path)
    return img, [str(w.message) for w in caught]


def test_what_the_conversion_loses_is_said_once(tmp_path):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    rgb.save(tmp_path / "plain.png")
    Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16)).save(tmp_path / "deep.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(100)
    rgba.save(tmp_path / "alpha.png")
    frames = [rgb, rgb.rotate(90), rgb.rotate(180)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert _read(tmp_path / "plain.png")[1] == []
    img, notes = _read(tmp_path / "deep.png")
    assert img.mode == "RGB" and notes == [f"{tmp_path / 'deep.png'}: 16-bit samples reduced to 8 bits"]
    assert _read(tmp_path / "alpha.png")[1] == [f"{tmp_path / 'alpha.png'}: alpha channel dropped"]
    img, notes = _read(tmp_path / "anim.gif")
    assert img.size == (30, 20) and notes == [f"{tmp_path / 'anim.gif'}: first of 3 frames kept"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_rgb(tmp_path / "alpha.png", warn_alpha=False)  # training data: no notes


def _png(path, samples: np.ndarray, color_type: int) -> None:
    """A PNG written byte by byte (Pillow cannot write 16-bit colour): ``samples`` big-endian uint16, (h, w, c)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = samples.shape[:2]
    raw = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_colour_files_say_they_lose_depth(tmp_path):
    """48-bit RGB and 64-bit RGBA PNG, 16-bit PPM: Pillow opens them as 8-bit modes, the note still comes."""
    rng = np.random.default_rng(1)
    rgb16 = rng.integers(0, 65536, (6, 7, 3))
    _png(tmp_path / "rgb48.png", rgb16, color_type=2)
    _png(tmp_path / "rgba64.png", np.concatenate([rgb16, np.full((6, 7, 1), 65535)], axis=2), color_type=6)
    (tmp_path / "deep.ppm").write_bytes(b"P6\n7 6\n65535\n" + rgb16.astype(">u2").tobytes())
    with Image.open(tmp_path / "rgb48.png") as opened:
        assert opened.mode == "RGB"  # nothing in the mode says 16 bits
    for name, extra in (("rgb48.png", ""), ("rgba64.png", "alpha channel dropped, "), ("deep.ppm", "")):
        img, notes = _read(tmp_path / name)
        assert img.mode == "RGB" and img.size == (7, 6)
        assert notes == [f"{tmp_path / name}: {extra}16-bit samples reduced to 8 bits"], name
    for name in ("rgb48.png", "deep.ppm"):  # the 8 bits kept are the samples scaled, within a level
        kept = np.asarray(_read(tmp_path / name)[0], dtype=np.float64)
        assert np.abs(kept - rgb16 * 255 / 65535).max() <= 1.0, name


def test_unreadable_files_name_themselves(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(ImageReadError, match="junk.png: not a readable image"):
        open_rgb(tmp_path / "junk.png")
    with pytest.raises(ImageReadError, match="no such file"):
        open_rgb(tmp_path / "none.png")


def test_to_image_rounds_where_truncation_would_lower_every_pixel():
    x = torch.full((1, 3, 2, 2), 100.6 / 255)
    assert np.asarray(to_image(x)).max() == 101
    assert torch.equal(to_tensor(to_image(x)), torch.full((1, 3, 2, 2), 101 / 255))


def test_an_rgb_image_is_read_without_a_second_copy(tmp_path, monkeypatch):
    """Pillow's decoded image is what comes back: no copy for the EXIF rotation nor for the conversion to RGB."""
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "a.png")

    def refuse(*args, **kwargs):
        raise AssertionError("a second copy of the image")

    monkeypatch.setattr(Image.Image, "copy", refuse)
    monkeypatch.setattr(Image.Image, "convert", refuse)
    assert open_rgb(tmp_path / "a.png").size == (60, 40)


def test_a_size_check_refuses_the_image_before_its_pixels_are_decoded(tmp_path, monkeypatch):
    from PIL import ImageFile

    Image.new("RGB", (60, 40)).save(tmp_path / "a.png")

    def refuse(width: int, height: int) -> None:
        raise ImageReadError(f"{width}x{height} refused")

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels decoded"))
    with pytest.raises(ImageReadError, match="60x40 refused"):
        open_rgb(tmp_path / "a.png", check_size=refuse)


def test_a_decompression_bomb_is_refused_naming_its_size(tmp_path):
    """A 20000x20000 PNG header (Pillow refuses it at open, before any pixel): the message says why."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(bytes(1000)))
                                        + chunk(b"IEND", b""))
    with pytest.raises(ImageReadError) as e:
        open_rgb(tmp_path / "bomb.png")
    assert str(e.value) == (f"{tmp_path / 'bomb.png'}: Image size (400000000 pixels) exceeds limit of "
                            f"{2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack.")


def test_deep_samples_are_reduced_a_strip_at_a_time(tmp_path):
    """A tall 16-bit grey image: the conversion's own arrays (traced: numpy's) are its 8-bit copy and a strip.

    Scaling the whole image in float64 took 24 bytes a pixel beside the image
    Pillow holds (a copy, its scaled copy, the rounded one), three times what
    the 8-bit RGB result takes; a strip of rows costs the same whatever the height.
    """
    import tracemalloc

    height, width = 32768, 64
    samples = np.arange(height * width, dtype=np.uint32).reshape(height, width) * 7 % 65536
    Image.fromarray(samples.astype(np.uint16)).save(tmp_path / "deep.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracemalloc.start()
        try:
            img = open_rgb(tmp_path / "deep.png")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    expected = np.clip(np.round(samples / 65535 * 255), 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(img), np.repeat(expected[..., None], 3, axis=2))
    assert peak < 1.5 * height * width, f"{peak / (height * width):.1f} bytes a pixel"
