"""Images to ``.tcm`` bytes and back: tiling, entropy coding, the weights id, self-checks."""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import Tensor

from datasets import to_image, to_tensor
from models import CheckpointError, load_model
from utils import PAD_MULTIPLE, crop, pad

from . import container
from .container import Header
from .settings import DEFAULT_TILE, PRECISION_NAMES, CodecError, check_tile_side, default_precision  # noqa: F401


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


def tables_id(net: torch.nn.Module) -> bytes:
    """First bytes of a sha256 over the coding tables (the bottleneck's and the Gaussian CDFs).

    The rANS coder codes with these, so encoder and decoder must hold the same
    ones: a release file carries them; a training checkpoint builds the
    bottleneck's on load (``update()``), which another machine may do with
    other last bits.
    """
    h = hashlib.sha256()
    for module in (net.entropy_bottleneck, net.gaussian_conditional):
        for name in ("_quantized_cdf", "_offset", "_cdf_length"):
            t = getattr(module, name).detach().to("cpu", torch.int32).contiguous()
            h.update(f"{name}|{tuple(t.shape)}|".encode())
            h.update(t.numpy().astype("<i4").tobytes())
    return h.digest()[: container.TABLES_ID_BYTES]


#: --precision names of the transform dtypes.
PRECISIONS = dict(zip(PRECISION_NAMES, (torch.float32, torch.bfloat16)))


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


def encode_tile(net, x: Tensor, transform_dtype: torch.dtype = torch.float32,
                portable: bool = True) -> tuple[bytes, bytes, bytes]:
    """(z stream, y stream, symbol bytes) of a (1, 3, H, W) tile, sides multiples of 128.

    The streams are ``TCM.compress``'s; its symbols are kept for the latent checksum.
    """
    out = net.compress(x, transform_dtype=transform_dtype, portable=portable)
    (y_stream,), (z_stream,) = out["strings"]
    return z_stream, y_stream, _symbol_bytes(out["symbols"])


def decode_tile(net, z_stream: bytes, y_stream: bytes, height: int, width: int,
                transform_dtype: torch.dtype = torch.float32, portable: bool = True) -> tuple[Tensor, bytes]:
    """(x_hat in [0, 1], symbol bytes) of one tile from its two streams."""
    z_shape = (height // 64, width // 64)
    z_bounded = _bounded(z_stream, net.entropy_bottleneck.channels * z_shape[0] * z_shape[1])
    y_bounded = _bounded(y_stream, net.M * (height // 16) * (width // 16))
    out = net.decompress([[y_bounded], [z_bounded]], z_shape, transform_dtype=transform_dtype, portable=portable)
    return out["x_hat"], _symbol_bytes(out["symbols"])


# ------------------------------------------------------------ images <-> bytes
@dataclass
class Codec:
    """A loaded model, its ids, and how it codes.

    Files are written in format version 2 with the portable (float64) entropy
    path, so that they decode on other machines; ``precision`` is the
    transforms' (g_a, h_a when encoding, g_s when decoding) and may differ
    between encoder and decoder.  Version-1 files decode with the float32
    path they were written with.
    """

    net: torch.nn.Module
    weights_id: bytes
    tile: int = DEFAULT_TILE
    precision: str = "fp32"
    tables_id: bytes = field(default=b"")
    portable: bool = True  # False writes the float32 path (for comparisons; such files decode only alike)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise CodecError(f"precision {self.precision!r}: choose from {', '.join(PRECISIONS)}")
        self.tables_id = self.tables_id or tables_id(self.net)

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, tile: int = DEFAULT_TILE, precision: str = "fp32") -> "Codec":
        try:
            net = load_model(checkpoint)
        except CheckpointError as e:
            raise CodecError(str(e)) from None
        return cls(net, weights_id(net), tile, precision)

    @property
    def id_hex(self) -> str:
        return self.weights_id.hex()

    @property
    def transform_dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    def encode(self, image: Image.Image) -> bytes:
        """The ``.tcm`` bytes of an RGB image."""
        width, height = image.size
        if width * height > container.MAX_PIXELS or max(width, height) > container.MAX_SIDE:
            raise CodecError(f"image of {width}x{height} is larger than this codec supports")
        check_tile_side(self.tile)
        x, (left, _, top, _) = pad(to_tensor(image), PAD_MULTIPLE)
        streams, crc = [], 0
        for t, l, th, tw in container.tile_grid(*x.shape[-2:], self.tile):
            z, y, symbols = encode_tile(self.net, x[..., t : t + th, l : l + tw], self.transform_dtype,
                                        self.portable)
            streams.append((z, y))
            crc = zlib.crc32(symbols, crc)
        header = Header(self.weights_id, height, width, top, left, self.tile, latent_crc=crc,
                        tables_id=self.tables_id,
                        entropy_path=container.PATH_FLOAT64 if self.portable else container.PATH_FLOAT32)
        return container.pack(header, streams)

    def check_weights(self, header: Header) -> None:
        """Refuse a file made with other weights or other coding tables, naming both."""
        if header.weights_id != self.weights_id:
            raise CodecError(
                f"made with weights {header.weights_id.hex()}, but the checkpoint has weights "
                f"{self.id_hex}: decode it with the checkpoint that compressed it"
            )
        if header.version >= 2 and header.tables_id != self.tables_id:
            raise CodecError(
                f"made with coding tables {header.tables_id.hex()}, but the checkpoint gives tables "
                f"{self.tables_id.hex()} (the same weights: a training checkpoint builds its tables on load, "
                "and another machine may build them differently): decode with a release file (updates.py)"
            )

    def decode(self, data: bytes) -> Image.Image:
        """The image in ``data``; raises ContainerError or CodecError, never writes anything."""
        header, streams = container.parse(data)
        self.check_weights(header)
        canvas = torch.empty(1, 3, *header.padded_size)
        crc = 0
        for (t, l, th, tw), (z, y) in zip(header.tiles(), streams):
            x_hat, symbols = decode_tile(self.net, z, y, th, tw, self.transform_dtype, header.portable)
            canvas[..., t : t + th, l : l + tw] = x_hat
            crc = zlib.crc32(symbols, crc)
        if crc != header.latent_crc:
            raise CodecError(
                "latent checksum mismatch: the decoded latents differ from the encoder's "
                "(a crafted file, or a decoder whose arithmetic differs from the encoder's)"
            )
        return to_image(crop(canvas, header.padding))
