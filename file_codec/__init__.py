"""The ``.tcm`` file codec: the container format, tiled coding with self-checks, batches of files.

The container, the option defaults and the weights lookup load without torch;
the names of :mod:`file_codec.codec` (the model's side) load it on first use,
so that ``codec.py info`` reads headers without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import container
from .container import ContainerError, Header
from .settings import DEFAULT_TILE, TRANSFORMS, CodecError, check_tile_side, default_transforms

_FROM_CODEC = ("Codec", "decode_tile", "encode_tile", "tables_id", "weights_id")

__all__ = [
    "DEFAULT_TILE", "TRANSFORMS", "Codec", "CodecError", "ContainerError", "Header", "check_tile_side",
    "container", "decode_tile", "default_transforms", "encode_tile", "tables_id", "weights_id",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_CODEC:
        return getattr(importlib.import_module(".codec", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
