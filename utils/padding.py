"""Padding images to the multiples of 128 that TCM needs, and cropping back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image
    from torch import Tensor

#: Image sides must be multiples of this: TCM's 8x8 Swin windows on the 1/16 latent.
PAD_MULTIPLE = 128

Padding = tuple[int, int, int, int]
#: A rectangle of the padded image: (top, left, height, width), as ``file_codec.container.tile_grid`` gives tiles.
Region = tuple[int, int, int, int]


def pad(x: Tensor, p: int = PAD_MULTIPLE) -> tuple[Tensor, Padding]:
    """Zero-pad an NCHW batch, centred, to the next multiple of ``p`` on each side.

    TCM needs sides that are multiples of 128 (8x8 Swin windows on the 1/16
    latent); this is the padding of the paper's evaluation.  Returns the padded
    tensor and ``(left, right, top, bottom)`` for :func:`crop`.
    """
    import torch.nn.functional as F

    from .light_imports import light_imports

    light_imports()
    from compressai.ops import compute_padding

    h, w = x.shape[-2:]
    padding, _ = compute_padding(h, w, min_div=p)
    return F.pad(x, padding, mode="constant", value=0.0), padding


def pad_replicate(x: Tensor, p: int = PAD_MULTIPLE) -> tuple[Tensor, Padding]:
    """As :func:`pad` (centred, the same ``padding``), but repeating the edge rows and columns.

    Zero padding puts a hard black edge beside the image that the transforms
    spend bits on and that bleeds into the decoded border; repeated edges give
    them nothing new to code (the file codec's padding: docs/format.md, Padding).
    """
    import torch.nn.functional as F

    from .light_imports import light_imports

    light_imports()
    from compressai.ops import compute_padding

    h, w = x.shape[-2:]
    padding, _ = compute_padding(h, w, min_div=p)
    return F.pad(x, padding, mode="replicate"), padding


#: The paddings by name: "zero" is the paper's, "replicate" the file codec's.
PADDINGS: dict[str, Callable[[Tensor, int], tuple[Tensor, Padding]]] = {"zero": pad, "replicate": pad_replicate}


def crop(x: Tensor, padding: Padding) -> Tensor:
    """Undo :func:`pad`."""
    left, right, top, bottom = padding
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


def centred_padding(height: int, width: int, p: int = PAD_MULTIPLE) -> Padding:
    """``(left, right, top, bottom)``: what :func:`pad` and :func:`pad_replicate` add to an image of this size."""
    left, top = (-width % p) // 2, (-height % p) // 2
    return left, -width % p - left, top, -height % p - top


def padded_region(image: Image.Image, padding: Padding, mode: str, region: Region) -> np.ndarray:
    """One region of the padded image, as (height, width, 3) uint8, read from that region of ``image`` alone.

    Equal, once converted like the image (``datasets.to_tensor``), to the same
    region of :func:`pad` (``mode`` "zero") or :func:`pad_replicate`
    ("replicate") of the whole image, without making that whole padded image:
    the file codec codes a large image tile by tile in memory bounded by a
    tile (docs/format.md, Memory).
    """
    import numpy as np

    if mode not in PADDINGS:
        raise ValueError(f"padding {mode!r}: choose from {', '.join(PADDINGS)}")
    left, _, top, _ = padding
    t, l, h, w = region
    rows = np.arange(t - top, t - top + h)
    cols = np.arange(l - left, l - left + w)
    if mode == "replicate":  # each padding pixel repeats the nearest edge pixel
        rows, cols = rows.clip(0, image.height - 1), cols.clip(0, image.width - 1)
        part = np.asarray(image.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)))
        return part[np.ix_(rows - rows[0], cols - cols[0])]
    out = np.zeros((h, w, 3), dtype=np.uint8)
    inside_rows = rows[(rows >= 0) & (rows < image.height)]
    inside_cols = cols[(cols >= 0) & (cols < image.width)]
    if inside_rows.size and inside_cols.size:
        r0, c0 = int(inside_rows[0]), int(inside_cols[0])
        r1, c1 = int(inside_rows[-1]) + 1, int(inside_cols[-1]) + 1
        out[r0 - rows[0] : r1 - rows[0], c0 - cols[0] : c1 - cols[0]] = np.asarray(image.crop((c0, r0, c1, r1)))
    return out


def image_part(padding: Padding, size: tuple[int, int], region: Region) -> tuple[slice, slice, tuple[int, int]] | None:
    """Where a region of the padded image lies in the image of ``size`` (width, height), or None if only in padding.

    ``(rows, cols, (x, y))``: the region's rows and columns that hold image
    pixels, and where in the image the first of them is: what :func:`crop`
    keeps of that region.
    """
    left, _, top, _ = padding
    width, height = size
    t, l, h, w = region
    r0, r1 = max(t, top), min(t + h, top + height)
    c0, c1 = max(l, left), min(l + w, left + width)
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0 - t, r1 - t), slice(c0 - l, c1 - l), (c0 - left, r0 - top)
