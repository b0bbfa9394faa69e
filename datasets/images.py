"""Reading images as 8-bit RGB, whatever Pillow opens.

Shared by evaluation, training and the codec so that every tool converts the
same way: EXIF orientation applied; grayscale, palette and CMYK converted to
RGB; alpha dropped (composited on nothing: the colour channels are kept);
16-bit and 32-bit integer or float images scaled to 8 bits.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}


class ImageReadError(Exception):
    """An image that cannot be read; the message names the file."""


def _to_8bit_rgb(img: Image.Image) -> tuple[Image.Image, bool]:
    """Returns the RGB image and whether an alpha channel was dropped."""
    had_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(a, mode="L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        top = 1.0 if a.max() <= 1.0 else 255.0
        img = Image.fromarray(np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB"), had_alpha


def open_rgb(path: str | os.PathLike, warn_alpha: bool = True) -> Image.Image:
    """Open ``path`` as an 8-bit RGB image (EXIF rotation applied) or raise ImageReadError."""
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb, had_alpha = _to_8bit_rgb(img)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__})") from None
    if had_alpha and warn_alpha:
        warnings.warn(f"{path}: alpha channel dropped", stacklevel=2)
    return rgb


def to_tensor(img: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float32 in [0, 1]."""
    a = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_image(x: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> 8-bit RGB image (rounded)."""
    if x.dim() == 4:
        x = x[0]
    a = x.detach().clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(a, mode="RGB")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Files of ``folder`` (not recursive) with an image extension, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
