"""The ``.tcm`` file codec: the container format, tiled coding with self-checks, batches of files."""

from . import container
from .codec import DEFAULT_TILE, Codec, CodecError, check_tile_side, decode_tile, encode_tile, weights_id
from .container import ContainerError, Header

__all__ = [
    "DEFAULT_TILE", "Codec", "CodecError", "ContainerError", "Header", "check_tile_side", "container",
    "decode_tile", "encode_tile", "weights_id",
]
