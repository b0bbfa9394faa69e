"""Embedded colour profiles converted to sRGB when images are read, and said (datasets/colour.py, datasets/images.py)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image, ImageCms

from datasets import open_rgb
from datasets.colour import conversion
from tests.colour_profiles import (P3_PRIMARIES, SRGB_PRIMARIES, cmyk_profile, convert, grey_profile, matrix_profile,
                                   srgb_encode)

P3 = matrix_profile("Display P3")


def _read(path, **options) -> tuple[np.ndarray, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = open_rgb(path, **options)
    assert img.mode == "RGB"
    return np.asarray(img), [str(w.message) for w in caught]


def _pixels(seed: int = 0) -> np.ndarray:
    """Random colours below every grey level (the darkest are where conversions go wrong first)."""
    colours = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    greys = np.repeat(np.arange(256, dtype=np.uint8).reshape(8, 32, 1), 3, axis=2)
    return np.concatenate([greys, colours])


def test_a_display_p3_image_becomes_the_srgb_colours_a_managed_viewer_shows(tmp_path):
    pixels = _pixels()
    Image.fromarray(pixels).save(tmp_path / "p3.png", icc_profile=P3)
    got, notes = _read(tmp_path / "p3.png")
    assert notes == [f"{tmp_path / 'p3.png'}: colour profile 'Display P3' converted to sRGB"]
    # within a level of the arithmetic (P3 to XYZ to sRGB, clipped to sRGB's gamut), 12 levels away from the values
    assert np.abs(got.astype(int) - convert(pixels, P3_PRIMARIES)).max() <= 1
    assert np.abs(got.astype(int) - pixels).mean() > 10


def test_a_jpeg_profile_and_alpha_are_both_said(tmp_path):
    pixels = _pixels(1)
    Image.fromarray(pixels).save(tmp_path / "p3.jpg", icc_profile=P3, quality=95)
    decoded = np.asarray(Image.open(tmp_path / "p3.jpg"))
    got, notes = _read(tmp_path / "p3.jpg")
    assert notes == [f"{tmp_path / 'p3.jpg'}: colour profile 'Display P3' converted to sRGB"]
    assert np.abs(got.astype(int) - convert(decoded, P3_PRIMARIES)).max() <= 1
    rgba = Image.fromarray(pixels).convert("RGBA")
    rgba.putalpha(99)
    rgba.save(tmp_path / "p3a.png", icc_profile=P3)
    got, notes = _read(tmp_path / "p3a.png")
    assert notes == [f"{tmp_path / 'p3a.png'}: alpha channel dropped, colour profile 'Display P3' converted to sRGB"]
    assert np.abs(got.astype(int) - convert(pixels, P3_PRIMARIES)).max() <= 1


def test_an_srgb_profile_changes_nothing_and_says_nothing(tmp_path):
    pixels = _pixels(2)
    for name, icc in [("lcms", ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()),
                      ("own", matrix_profile("sRGB IEC61966-2.1", SRGB_PRIMARIES))]:
        Image.fromarray(pixels).save(tmp_path / f"{name}.png", icc_profile=icc)
        got, notes = _read(tmp_path / f"{name}.png")
        assert notes == [] and np.array_equal(got, pixels), name


def test_a_grey_profile_gives_grey_srgb_values(tmp_path):
    grey = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    Image.fromarray(grey, "L").save(tmp_path / "linear.png", icc_profile=grey_profile("Linear grey", 1.0))
    got, notes = _read(tmp_path / "linear.png")
    assert notes == [f"{tmp_path / 'linear.png'}: colour profile 'Linear grey' converted to sRGB"]
    expected = np.round(srgb_encode(grey / 255.0) * 255)
    assert np.abs(got.astype(int) - expected[..., None]).max() <= 1


def test_a_cmyk_profile_gives_the_profiles_colours_not_pillows_plain_conversion(tmp_path):
    """A CMYK JPEG with its printer profile: the inks through the profile's table, not 255 - C, 255 - M, 255 - Y."""
    ink = np.random.default_rng(6).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    ink[0, :4] = [[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255], [255, 255, 255, 0]]  # paper, cyan, black, three inks
    profile = cmyk_profile("Simple ink")
    Image.frombytes("CMYK", (16, 16), ink.tobytes()).save(tmp_path / "cmyk.jpg", icc_profile=profile, quality=100)
    decoded = Image.open(tmp_path / "cmyk.jpg")
    assert decoded.mode == "CMYK"
    got, notes = _read(tmp_path / "cmyk.jpg")
    assert notes == [f"{tmp_path / 'cmyk.jpg'}: colour profile 'Simple ink' converted to sRGB"]
    through_profile = ImageCms.profileToProfile(decoded, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                                ImageCms.createProfile("sRGB"), outputMode="RGB")
    assert np.array_equal(got, np.asarray(through_profile))
    assert np.abs(got.astype(int) - np.asarray(decoded.convert("RGB"))).mean() > 5
    assert np.abs(got[0, 0].astype(int) - 255).max() <= 2 and got[0, 2].max() <= 2  # paper is white, black is black


def test_profiles_that_cannot_apply_are_ignored_and_said(tmp_path):
    pixels = _pixels(3)
    Image.fromarray(pixels).save(tmp_path / "garbage.png", icc_profile=b"not a profile" * 20)
    Image.fromarray(pixels).save(tmp_path / "grey-on-rgb.png", icc_profile=grey_profile("Gray Gamma 2.2", 2.2))
    got, notes = _read(tmp_path / "garbage.png")
    assert notes == [f"{tmp_path / 'garbage.png'}: an unreadable colour profile ignored"]
    assert np.array_equal(got, pixels)
    got, notes = _read(tmp_path / "grey-on-rgb.png")
    assert notes == [f"{tmp_path / 'grey-on-rgb.png'}: colour profile 'Gray Gamma 2.2' (GRAY) does not fit a RGB "
                     "image: ignored"]
    assert np.array_equal(got, pixels)


def test_a_description_is_one_short_line_whatever_the_file_holds(tmp_path):
    Image.fromarray(_pixels(4)).save(tmp_path / "long.png", icc_profile=matrix_profile("P3\nlines\t" + "x" * 200))
    _, (note,) = _read(tmp_path / "long.png")
    assert "\n" not in note and "'P3 lines xxxx" in note and len(note) < len(str(tmp_path)) + 130


def test_training_data_is_converted_without_a_word(tmp_path):
    pixels = _pixels(5)
    Image.fromarray(pixels).save(tmp_path / "p3.png", icc_profile=P3)
    got, notes = _read(tmp_path / "p3.png", warn_alpha=False)
    assert notes == [] and np.abs(got.astype(int) - convert(pixels, P3_PRIMARIES)).max() <= 1


def test_a_profile_is_parsed_once_for_many_images():
    conversion.cache_clear()
    for _ in range(3):
        assert conversion(P3, "RGB").note == "colour profile 'Display P3' converted to sRGB"
    assert conversion.cache_info().hits == 2


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_an_rgb_profile_on_another_mode_is_ignored(mode):
    assert conversion(P3, mode).transform is None
    assert conversion(P3, mode).note == f"colour profile 'Display P3' (RGB) does not fit a {mode} image: ignored"


def test_the_profile_bytes_written_here_are_a_profile_lcms_reads():
    profile = ImageCms.ImageCmsProfile(io.BytesIO(P3))
    assert ImageCms.getProfileDescription(profile).strip() == "Display P3"
    assert profile.profile.red_colorant[0] == pytest.approx((0.5151, 0.2412, -0.0011), abs=1e-4)  # Apple's P3
