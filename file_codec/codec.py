"""Images to ``.tcm`` bytes and back: tiling, entropy coding, the weights id, self-checks."""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor

from datasets import to_image, to_tensor
from models import CheckpointError, load_model
from utils import PAD_MULTIPLE, ToolError, crop, pad

from . import container
from .container import Header

#: Default tile side: images whose padded sides fit are coded in one piece.
DEFAULT_TILE = 2048


class CodecError(ToolError):
    """A failure to code one input; the message is one line."""


def weights_id(net: torch.nn.Module) -> bytes:
    """First bytes of a sha256 over the model's parameters (names, dtypes, shapes, values).

    Only learned parameters count: the entropy tables are derived from them by
    ``update()``, so a training checkpoint and a release file holding the same
    weights get the same id whatever their file name, format or key prefix.
    """
    h = hashlib.sha256()
    for name, p in sorted(net.named_parameters()):
        t = p.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.digest()[: container.ID_BYTES]


def check_tile_side(tile: int) -> None:
    if tile % PAD_MULTIPLE or not PAD_MULTIPLE <= tile <= container.MAX_TILE:
        raise CodecError(f"tile side {tile} is not a multiple of {PAD_MULTIPLE} in {PAD_MULTIPLE}..{container.MAX_TILE}")


# ------------------------------------------------------------ entropy coding of one tile
def _symbol_bytes(symbols: dict[str, Tensor]) -> bytes:
    """The coded integers (z, then y), little-endian int32: what the latent CRC covers."""
    return b"".join(symbols[k].reshape(-1).to(torch.int32).numpy().astype("<i4").tobytes() for k in ("z", "y"))


def _bounded(stream: bytes, n_symbols: int) -> bytes:
    """The stream followed by zero words, so that the C++ decoder reads inside the buffer.

    CompressAI's rANS decoder reads 32-bit words with no bounds check.  On a
    valid stream it stops at the end; on a crafted one (the file checksum
    keeps damaged files away from it) each symbol reads at most one word, plus
    bypass words that run out once the zeros are reached.
    """
    return stream + bytes(-len(stream) % 4 + 8 * n_symbols + 4 * len(stream) + 4096)


def encode_tile(net, x: Tensor) -> tuple[bytes, bytes, bytes]:
    """(z stream, y stream, symbol bytes) of a (1, 3, H, W) tile, sides multiples of 128.

    The streams are ``TCM.compress``'s; its symbols are kept for the latent checksum.
    """
    out = net.compress(x)
    (y_stream,), (z_stream,) = out["strings"]
    return z_stream, y_stream, _symbol_bytes(out["symbols"])


def decode_tile(net, z_stream: bytes, y_stream: bytes, height: int, width: int) -> tuple[Tensor, bytes]:
    """(x_hat in [0, 1], symbol bytes) of one tile from its two streams."""
    z_shape = (height // 64, width // 64)
    z_bounded = _bounded(z_stream, net.entropy_bottleneck.channels * z_shape[0] * z_shape[1])
    y_bounded = _bounded(y_stream, net.M * (height // 16) * (width // 16))
    out = net.decompress([[y_bounded], [z_bounded]], z_shape)
    return out["x_hat"], _symbol_bytes(out["symbols"])


# ------------------------------------------------------------ images <-> bytes
@dataclass
class Codec:
    """A loaded model, its weights id and the tile side used when compressing."""

    net: torch.nn.Module
    weights_id: bytes
    tile: int = DEFAULT_TILE

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, tile: int = DEFAULT_TILE) -> "Codec":
        try:
            net = load_model(checkpoint)
        except CheckpointError as e:
            raise CodecError(str(e)) from None
        return cls(net, weights_id(net), tile)

    @property
    def id_hex(self) -> str:
        return self.weights_id.hex()

    def encode(self, image: Image.Image) -> bytes:
        """The ``.tcm`` bytes of an RGB image."""
        width, height = image.size
        if width * height > container.MAX_PIXELS or max(width, height) > container.MAX_SIDE:
            raise CodecError(f"image of {width}x{height} is larger than this codec supports")
        check_tile_side(self.tile)
        x, (left, _, top, _) = pad(to_tensor(image), PAD_MULTIPLE)
        streams, crc = [], 0
        for t, l, th, tw in container.tile_grid(*x.shape[-2:], self.tile):
            z, y, symbols = encode_tile(self.net, x[..., t : t + th, l : l + tw])
            streams.append((z, y))
            crc = zlib.crc32(symbols, crc)
        header = Header(self.weights_id, height, width, top, left, self.tile, latent_crc=crc)
        return container.pack(header, streams)

    def decode(self, data: bytes) -> Image.Image:
        """The image in ``data``; raises ContainerError or CodecError, never writes anything."""
        header, streams = container.parse(data)
        if header.weights_id != self.weights_id:
            raise CodecError(
                f"made with weights {header.weights_id.hex()}, but the checkpoint has weights "
                f"{self.id_hex}: decode it with the checkpoint that compressed it"
            )
        canvas = torch.empty(1, 3, *header.padded_size)
        crc = 0
        for (t, l, th, tw), (z, y) in zip(header.tiles(), streams):
            x_hat, symbols = decode_tile(self.net, z, y, th, tw)
            canvas[..., t : t + th, l : l + tw] = x_hat
            crc = zlib.crc32(symbols, crc)
        if crc != header.latent_crc:
            raise CodecError(
                "latent checksum mismatch: the decoded latents differ from the encoder's "
                "(a crafted file, or a decoder whose arithmetic differs from the encoder's)"
            )
        return to_image(crop(canvas, header.padding))
