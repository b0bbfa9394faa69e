"""Padding images to the multiples of 128 that TCM needs, and cropping back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from torch import Tensor

#: Image sides must be multiples of this: TCM's 8x8 Swin windows on the 1/16 latent.
PAD_MULTIPLE = 128

Padding = tuple[int, int, int, int]


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
