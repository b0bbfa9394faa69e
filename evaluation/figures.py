"""Pictures of results: bit-allocation heat maps, enlarged crops, and the side-by-side figure for papers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from utils.files import atomic_write

Box = tuple[int, int, int, int]  # left, top, right, bottom


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    plt = _pyplot()
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".").lower() or "png", bbox_inches="tight")
    finally:
        plt.close(fig)


def save_bit_map(bits_per_pixel: np.ndarray, path: str | os.PathLike, title: str) -> None:
    """A heat map of bits per pixel with its colour bar."""
    plt = _pyplot()
    h, w = bits_per_pixel.shape
    fig, ax = plt.subplots(figsize=(6.0, 6.0 * h / w + 0.6))
    shown = ax.imshow(bits_per_pixel, cmap="inferno", interpolation="nearest", vmin=0)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label="bits per pixel")
    _save(fig, path)


def detail_box(image: Image.Image, side: int = 192) -> Box:
    """The square of ``side`` pixels with the most fine detail (gradient energy): where codecs differ most."""
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    h, w = gray.shape
    side = min(side, h, w)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.abs(np.diff(gray, axis=1))
    energy[1:, :] += np.abs(np.diff(gray, axis=0))
    summed = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    window = summed[side:, side:] - summed[:-side, side:] - summed[side:, :-side] + summed[:-side, :-side]
    top, left = np.unravel_index(int(np.argmax(window)), window.shape)
    return int(left), int(top), int(left) + side, int(top) + side


def enlarged_crop(image: Image.Image, box: Box, scale: int = 2) -> Image.Image:
    """The crop, enlarged with nearest-neighbour pixels (no smoothing that would hide artefacts)."""
    part = image.crop(box)
    return part.resize((part.width * scale, part.height * scale), Image.Resampling.NEAREST)


def visual_figure(panels: Sequence[tuple[str, Image.Image]], box: Box, path: str | os.PathLike,
                  title: str = "") -> None:
    """One image's crop across codecs, one labelled panel each ("Reconstructed samples")."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.4), squeeze=False)
    for ax, (label, image) in zip(axes[0], panels):
        ax.imshow(np.asarray(image.crop(box)), interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path, dpi=150)
