"""Images with an embedded colour profile (ICC), converted to sRGB with Pillow's ImageCms (LittleCMS).

The models, the metrics and the decoded files all take 8-bit values as sRGB;
the values of a Display P3 or Adobe RGB image mean other colours, so they are
converted to the sRGB values a colour-managed viewer would show (perceptual
rendering intent; matrix profiles such as Display P3 have only the
colorimetric one, which LittleCMS then uses).  A profile that gives sRGB's
values anyway (an embedded sRGB profile) changes nothing; a profile that
cannot be read, or that does not fit the image (a grey profile on a colour
image), is ignored.  Each case but the first two is said (``ColourResult.note``).
Images written from sRGB values say so (:func:`srgb_marking`).
"""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

#: A profile's ICC colour space -> the Pillow mode its transform reads, and the image modes brought to it.
PROFILE_MODES = {
    "RGB": ("RGB", {"RGB", "RGBA", "RGBX", "RGBa", "P", "PA"}),
    "GRAY": ("L", {"1", "L", "LA", "La"}),
    "CMYK": ("CMYK", {"CMYK"}),
}
#: The most a profile may move any probe colour (8-bit levels) and still count as sRGB.
SRGB_TOLERANCE = 1


@dataclass(frozen=True)
class Conversion:
    """What to do with one embedded profile, for images of one mode."""

    description: str
    transform: ImageCms.ImageCmsTransform | None = None  # None: leave the values as they are
    note: str | None = None


@dataclass
class ColourResult:
    image: Image.Image  # RGB
    note: str | None  # what was done to the colours, for the tool's notes; None when nothing worth saying


def describe(profile: ImageCms.ImageCmsProfile) -> str:
    """The profile's description on one line, at most 80 characters (a file's profile is arbitrary text)."""
    try:
        text = ImageCms.getProfileDescription(profile)
    except (ImageCms.PyCMSError, OSError, ValueError):
        text = ""
    text = re.sub(r"\s+", " ", "".join(c if c.isprintable() else " " for c in text)).strip()
    return repr(text[:77] + "..." if len(text) > 80 else text) if text else "(no description)"


def _probe(mode: str) -> tuple[Image.Image, np.ndarray]:
    """Colours to run through a transform, and the sRGB values it must give to count as sRGB."""
    levels = np.arange(0, 256, 17, dtype=np.uint8)  # 16 levels a channel, 0 and 255 included
    grey = np.arange(256, dtype=np.uint8)
    if mode == "L":
        return Image.fromarray(grey[None, :], "L"), np.repeat(grey[None, :, None], 3, axis=2)
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(1, -1, 3)
    colours = np.concatenate([cube, np.repeat(grey[None, :, None], 3, axis=2)], axis=1)
    return Image.fromarray(colours, "RGB"), colours


@functools.lru_cache(maxsize=16)
def conversion(icc: bytes, mode: str) -> Conversion:
    """The conversion of ``mode`` images carrying ``icc`` (cached: a data set often shares one profile)."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return Conversion("", note="an unreadable colour profile ignored")
    description = describe(profile)
    space = profile.profile.xcolor_space.strip()
    if space not in PROFILE_MODES or mode not in PROFILE_MODES[space][1]:
        return Conversion(description, note=f"colour profile {description} ({space}) does not fit a {mode} image: "
                                            "ignored")
    in_mode = PROFILE_MODES[space][0]
    try:
        # LittleCMS's optimised 8-bit grey transform is up to 10 levels off near black (a linear grey profile);
        # unoptimised, it is exact, at a cost that matters only for colour images (ten times slower there)
        flags = ImageCms.Flags.NOOPTIMIZE if in_mode == "L" else ImageCms.Flags.NONE
        transform = ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), in_mode, "RGB", flags=flags)
        if in_mode != "CMYK":
            probe, expected = _probe(in_mode)
            moved = np.abs(np.asarray(transform.apply(probe), dtype=np.int16) - expected).max()
            if moved <= SRGB_TOLERANCE:
                return Conversion(description)
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        return Conversion(description, note=f"colour profile {description} cannot be applied ({type(e).__name__}): "
                                            "ignored")
    return Conversion(description, transform, note=f"colour profile {description} converted to sRGB")


def to_srgb(img: Image.Image, icc: bytes | None) -> ColourResult:
    """``img`` (an 8-bit mode) as RGB, its colours converted to sRGB by ``icc``, the profile its file embeds, if any.

    Without a profile this is Pillow's ``convert("RGB")`` (no copy for an RGB
    image): the values are taken as sRGB.  An RGB image is converted in place.
    """
    plan = conversion(bytes(icc), img.mode) if icc else Conversion("")
    if plan.transform is None:
        return ColourResult(img if img.mode == "RGB" else img.convert("RGB"), plan.note)
    in_mode = plan.transform.input_mode
    source = img if img.mode == in_mode else img.convert(in_mode)
    if in_mode == "RGB":
        rgb = plan.transform.apply_in_place(source)  # no second copy of a large image
    else:
        rgb = plan.transform.apply(source)
    rgb.info.pop("icc_profile", None)
    return ColourResult(rgb, plan.note)


#: Formats whose files Pillow writes with an ICC profile (``icc_profile=``); PNG says sRGB in its own chunk.
ICC_FORMATS = ("JPEG", "TIFF", "WEBP")


@functools.lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    """LittleCMS's built-in sRGB profile (588 bytes)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def srgb_marking(fmt: str) -> dict:
    """Pillow ``save`` options that mark a file of format ``fmt`` as holding sRGB values, as a decoded file does.

    PNG gets its ``sRGB`` chunk (13 bytes, perceptual intent); JPEG, TIFF and
    WebP an sRGB profile; other formats (BMP, PPM, GIF) have no way to say it
    and are read as sRGB anyway.
    """
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add(b"sRGB", b"\x00")
        return {"pnginfo": info}
    if fmt in ICC_FORMATS:
        return {"icc_profile": srgb_profile()}
    return {}
