"""Reading images as 8-bit RGB, whatever Pillow opens.

Shared by evaluation, training and the codec so that every tool converts the
same way: EXIF orientation applied; grayscale, palette and CMYK converted to
RGB; alpha dropped (composited on nothing: the colour channels are kept);
16-bit and 32-bit integer or float images scaled to 8 bits; an embedded
colour profile converted to sRGB (``datasets.colour``).  A large image costs
Pillow's 8-bit copy of it (4 bytes a pixel) and no second one.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from utils.cli import ToolError, first_line
from utils.files import NotARegularFile, open_regular_file

from .colour import to_srgb

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}


class ImageReadError(ToolError):
    """An image that cannot be read; the message names the file."""


#: What :func:`open_rgb` says when the file's samples are deeper than the 8 bits kept.
DEEP_SAMPLES = "16-bit samples reduced to 8 bits"


def _stored_deeper_than_8_bits(img: Image.Image) -> bool:
    """Whether an image that Pillow opens in an 8-bit mode is stored with deeper samples.

    Pillow reads 48- and 64-bit PNG and TIFF (16 bits per colour sample) as
    "RGB"/"RGBA", and 16-bit PPM likewise, reducing the samples while it
    decodes; the mode no longer says so, but the decoder's raw mode
    ("RGB;16B") or the PPM's maximum value (above 255) does.  Call before
    ``load()``, which empties ``tile``.
    """
    for tile in getattr(img, "tile", None) or []:
        codec, args = tile[0], tile[3]
        rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else None
        if isinstance(rawmode, str) and (";16" in rawmode or ";32" in rawmode):
            return True
        if codec == "ppm" and isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int) and args[1] > 255:
            return True
    return False


#: Rows scaled at a time when deep samples are reduced to 8 bits: the float64 work is a strip, not the image.
STRIP_ROWS = 256


def _scaled_to_8bit(img: Image.Image, top: float) -> Image.Image:
    """A grey image of deep samples (integer or float) as "L", ``top`` at 255, a strip of rows at a time.

    Beside the image itself only its 8-bit copy and one strip are held (a
    whole float64 copy would be 8 bytes a pixel, more than the image read).
    """
    out = np.empty((img.height, img.width), dtype=np.uint8)
    for r in range(0, img.height, STRIP_ROWS):
        a = np.asarray(img.crop((0, r, img.width, min(r + STRIP_ROWS, img.height))), dtype=np.float64)
        out[r : r + a.shape[0]] = np.clip(np.round(a / top * 255.0), 0, 255)
    return Image.fromarray(out, mode="L")


def _to_8bit(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """The image in an 8-bit mode (integer and float grey images scaled) and what the conversion lost, for notes."""
    lost = []
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        lost.append("alpha channel dropped")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        largest = img.getextrema()[1]
        top = 65535.0 if img.mode.startswith("I;16") or largest > 255 else 255.0
        if top > 255:
            lost.append(DEEP_SAMPLES)
        img = _scaled_to_8bit(img, top)
    elif img.mode == "F":
        top = 1.0 if img.getextrema()[1] <= 1.0 else 255.0
        lost.append("floating-point samples reduced to 8 bits")
        img = _scaled_to_8bit(img, top)
    return img, lost


def open_rgb(path: str | os.PathLike, warn_alpha: bool = True,
             check_size: Callable[[int, int], None] | None = None) -> Image.Image:
    """Open ``path`` as an 8-bit RGB image (EXIF rotation applied, sRGB colours) or raise ImageReadError.

    What the conversion loses or changes (alpha, samples deeper than 8 bits,
    every frame of an animation but the first, a colour profile) is said in
    one warning per file, unless ``warn_alpha`` is False (training data).
    ``check_size(width, height)`` sees the size before any pixel is decoded
    and raises to refuse the image (the file codec's limits).
    """
    path = os.fspath(path)
    try:
        # A FIFO or a device is refused before reading: Pillow would wait for a writer, or read forever.
        with open_regular_file(path) as f, Image.open(f) as img:
            if check_size is not None:
                check_size(*img.size)
            frames = getattr(img, "n_frames", 1)
            deep = _stored_deeper_than_8_bits(img)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # a copy only where the orientation needs one
            icc = img.info.get("icc_profile")
            img, lost = _to_8bit(img)
            colour = to_srgb(img, icc)
            rgb = colour.image
            if deep and DEEP_SAMPLES not in lost:
                lost.append(DEEP_SAMPLES)
            if colour.note:
                lost.append(colour.note)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except NotARegularFile as e:
        raise ImageReadError(f"{path}: {e}") from None
    except Image.DecompressionBombError as e:  # its message gives the size and Pillow's limit
        raise ImageReadError(f"{path}: {first_line(e)}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__})") from None
    if frames > 1:
        lost.append(f"first of {frames} frames kept")
    if lost and warn_alpha:
        warnings.warn(f"{path}: {', '.join(lost)}", stacklevel=2)
    return rgb


def to_tensor(img: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float32 in [0, 1]."""
    a = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_image(x: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> 8-bit RGB image, rounded to the nearest level.

    torchvision's ``to_pil_image`` truncates (``mul(255).byte()``), which
    lowers every pixel by half a level on average; rounding keeps a decoded
    file equal to what evaluation scores as the 8-bit reconstruction.
    """
    if x.dim() == 4:
        x = x[0]
    a = x.detach().clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(a, mode="RGB")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Files of ``folder`` (not recursive) with an image extension, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
