"""What the codec's command line needs before a model is loaded: option defaults, their checks, the error type.

Nothing here imports torch or CompressAI, so that ``codec.py info`` and
``--help`` start at once (docs/speed.md, Start-up).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.mode_names import TRANSFORMS
from utils.cli import ToolError

from .container import MAX_PIXELS, MAX_SIDE, tile_side_error

#: Default tile side: images whose padded sides fit are coded in one piece.
DEFAULT_TILE = 2048
#: The entropy arithmetics a codec writes (``models.coding.CodingMode.ENTROPIES``), the default first
#: (docs/portability.md): exact integers for weights that carry their integer parameters, else the fallback,
#: float64; the transforms' (``TRANSFORMS``) are models.mode_names', spelt without torch.
ENTROPIES = ("int8", "float64", "float32")
DEFAULT_ENTROPY = ENTROPIES[0]
FALLBACK_ENTROPY = "float64"
__all__ = ["DEFAULT_ENTROPY", "DEFAULT_TILE", "ENTROPIES", "FALLBACK_ENTROPY", "TRANSFORMS", "CodecError",
           "check_tile_side", "default_coding", "default_transforms", "native_bfloat16", "tile_argument"]


class CodecError(ToolError):
    """A failure to code one input; the message is one line."""


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bfloat16 transforms are fast."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def default_transforms() -> str:
    """bfloat16 where the CPU has it: the quality it costs is measured negligible (docs/portability.md)."""
    return "bfloat16" if native_bfloat16() else "float32"


def default_coding() -> str:
    """The coding mode ``codec.py compress`` writes by default here with weights that carry integer entropy
    parameters (the shipped models, release files), as text (``"int8/bfloat16"``)."""
    return f"{DEFAULT_ENTROPY}/{default_transforms()}"


def check_tile_side(tile: int) -> None:
    """CodecError for a tile side a file cannot record (``container.tile_side_error``)."""
    why = tile_side_error(tile)
    if why:
        raise CodecError(why)


def tile_argument(text: str) -> int:
    """``--tile``'s argparse type (codec.py, eval.py): a side a file can record, else argparse's one-line error."""
    try:
        tile = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    why = tile_side_error(tile)
    if why:
        raise argparse.ArgumentTypeError(why)
    return tile


#: Bytes a pixel of the image the codec holds whole: Pillow's 8-bit RGB (docs/format.md, Memory).
IMAGE_BYTES_PER_PIXEL = 4


def image_memory(pixels: int) -> str:
    """What holding an image of ``pixels`` pixels takes, for messages (``"0.30 GiB"``)."""
    return f"{IMAGE_BYTES_PER_PIXEL * pixels / 2**30:.2f} GiB"


def check_image_size(width: int, height: int, max_pixels: int | None = None) -> None:
    """Refuse an image a ``.tcm`` file cannot hold, or one over ``max_pixels`` (``codec.py compress --max-pixels``),
    saying what holding it would take; ``codec.py compress`` asks before decoding its pixels."""
    pixels = width * height
    if pixels > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise CodecError(f"image of {width}x{height} is larger than this codec supports "
                         f"(at most {MAX_SIDE} pixels a side and {MAX_PIXELS} pixels)")
    if max_pixels is not None and pixels > max_pixels:
        raise CodecError(f"image of {width}x{height}, {pixels} pixels, over the limit of {max_pixels}: holding it "
                         f"would take {image_memory(pixels)} beside the model and one tile; if that fits, pass "
                         f"--max-pixels {pixels}")
