"""The ``.tcm`` file codec: the container format, tiled coding with self-checks, batches of files."""

from . import container
from .codec import (DEFAULT_TILE, PRECISIONS, Codec, CodecError, check_tile_side, decode_tile, default_precision,
                    encode_tile, tables_id, weights_id)
from .container import ContainerError, Header

__all__ = [
    "DEFAULT_TILE", "PRECISIONS", "Codec", "CodecError", "ContainerError", "Header", "check_tile_side",
    "container", "decode_tile", "default_precision", "encode_tile", "tables_id", "weights_id",
]
