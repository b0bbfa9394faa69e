"""Images to ``.tcm`` bytes and back: tiling, entropy coding, the weights id, self-checks."""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image
from torch import Tensor

from utils.light_imports import light_imports

light_imports()  # before the first import of CompressAI or timm

from compressai.ans import RansDecoder  # noqa: E402

from datasets import to_image, to_tensor  # noqa: E402
from models import CheckpointError, load_model  # noqa: E402
from models.coding import Coder, CodingMode  # noqa: E402
from models.state_dict import published_key  # noqa: E402
from utils.padding import PADDINGS, centred_padding, image_part, padded_region  # noqa: E402

from . import container
from .container import DEFAULT_MAX_PIXELS, Header
from .settings import (DEFAULT_ENTROPY, DEFAULT_TILE, FALLBACK_ENTROPY, CodecError, check_image_size,
                       check_tile_side, image_memory)


def weights_id(net: torch.nn.Module) -> bytes:
    """First bytes of a sha256 over the model's parameters (names, dtypes, shapes, values).

    Only learned parameters count, by their published names: the entropy
    tables are derived from them by ``update()``, so a training checkpoint and
    a release file holding the same weights get the same id whatever their file
    name, format or key prefix.
    """
    h = hashlib.sha256()
    for name, p in sorted((published_key(n), p) for n, p in net.named_parameters()):
        t = p.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.digest()[: container.ID_BYTES]


def tables_id(net: torch.nn.Module, integer_digest: bytes = b"") -> bytes:
    """First bytes of a sha256 over the coding tables (the bottleneck's and the Gaussian CDFs), and for the
    int8 entropy arithmetic the digest of the integer parameters (``models.integer_entropy.Parameters``).

    The rANS coder codes with the tables and the integer model computes with
    the parameters, so encoder and decoder must hold the same ones: a release
    file carries them; a training checkpoint builds the bottleneck's tables on
    load (``update()``), and a model without stored integer parameters
    calibrates them, which another machine may do with other last bits.
    """
    h = hashlib.sha256()
    for module in (net.entropy_bottleneck, net.gaussian_conditional):
        for name in ("_quantized_cdf", "_offset", "_cdf_length"):
            t = getattr(module, name).detach().to("cpu", torch.int32).contiguous()
            h.update(f"{name}|{tuple(t.shape)}|".encode())
            h.update(t.numpy().astype("<i4").tobytes())
    h.update(integer_digest)
    return h.digest()[: container.TABLES_ID_BYTES]


# ------------------------------------------------------------ entropy coding of one tile
def _symbol_bytes(symbols: dict[str, Tensor]) -> bytes:
    """The coded integers (z, then y), little-endian int32: what the latent CRCs cover."""
    return b"".join(symbols[k].reshape(-1).to(torch.int32).numpy().astype("<i4").tobytes() for k in ("z", "y"))


#: Two fillings of the bytes after a stream (32-bit words, little-endian).  A decoder that stays inside
#: the stream decodes the same symbols from both; one that reads past its end reads other words, and its
#: next symbol comes from the other end of the coding table.  Neither word holds the nibble 15 that keeps
#: CompressAI's bypass decoder reading.
_FILLS = (bytes(4), bytes.fromhex("00800080"))


def _bounded(stream: bytes, n_symbols: int, fill: bytes = _FILLS[0]) -> bytes:
    """The stream followed by ``fill`` words, so that the C++ decoder reads inside the buffer.

    CompressAI's rANS decoder reads 32-bit words with no bounds check.  On a
    valid stream it stops at the end; on a crafted one (the file checksum
    keeps damaged files away from it) each symbol reads at most one word, plus
    bypass words that run out once the fill is reached.
    """
    n = -len(stream) % 4 + 8 * n_symbols + 4 * len(stream) + 4096
    return stream + (fill * (n // 4 + 1))[:n]


def check_stream(stream: bytes, name: str) -> None:
    """Refuse, before decoding, what CompressAI's rANS encoder cannot have written: its streams are whole
    32-bit words, at least the two of its final state."""
    if len(stream) < 8 or len(stream) % 4:
        raise CodecError(f"its {name} stream of {len(stream)} byte{'s' * (len(stream) != 1)} is not a rANS stream "
                         "(whole 32-bit words, at least 8 bytes)")


def encode_tile(coder: Coder, x: Tensor) -> tuple[bytes, bytes, bytes]:
    """(z stream, y stream, symbol bytes) of a (1, 3, H, W) tile, sides multiples of 128.

    The streams are the coder's ``compress``'s; its symbols are kept for the latent checksum.
    """
    out = coder.compress(x)
    (y_stream,), (z_stream,) = out["strings"]
    return z_stream, y_stream, _symbol_bytes(out["symbols"])


class BoundedStream:
    """A stream read twice, followed by either fill of :data:`_FILLS` (a stream reader of
    ``models.entropy_model``: ``RansDecoder``'s ``decode_stream``).

    The two readings agree while the stream lasts; the first part (a y slice,
    or the whole z) where they differ read past its end, and decoding stops
    there: a stream shorter than the symbols the header's tile size needs (a
    crafted file) costs one slice of work, not a whole image's.
    """

    def __init__(self, stream: bytes, n_symbols: int, name: str, parts: int = 1):
        self.readers = []
        for fill in _FILLS:
            self.readers.append(RansDecoder())
            self.readers[-1].set_stream(_bounded(stream, n_symbols, fill))
        self.name, self.parts, self.part = name, parts, 0

    def decode_stream(self, indexes: list[int], cdf: list, cdf_lengths: list, offsets: list) -> list[int]:
        self.part += 1
        first, second = (r.decode_stream(indexes, cdf, cdf_lengths, offsets) for r in self.readers)
        if first != second:
            where = f", in slice {self.part} of {self.parts}" if self.parts > 1 else ""
            raise CodecError(f"its {self.name} stream ends before its symbols do{where} (a crafted file)")
        return first


@torch.no_grad()
def decode_latents(coder: Coder, z_stream: bytes, y_stream: bytes, height: int, width: int) -> tuple[Tensor, bytes]:
    """(y_hat, symbol bytes) of one tile: the coder's entropy decoding, each stream read by a
    :class:`BoundedStream`."""
    check_stream(z_stream, "z")
    check_stream(y_stream, "y")
    net = coder.net
    z_shape = (height // 64, width // 64)
    z_reader = BoundedStream(z_stream, net.entropy_bottleneck.channels * z_shape[0] * z_shape[1], "z")
    y_reader = BoundedStream(y_stream, net.M * (height // 16) * (width // 16), "y", net.num_slices)
    out = coder.decode_latents([[y_reader], [z_reader]], z_shape)
    return out["y_hat"], _symbol_bytes(out["symbols"])


@torch.no_grad()
def decode_tile(coder: Coder, z_stream: bytes, y_stream: bytes, height: int, width: int,
                check: Callable[[bytes], None] | None = None) -> tuple[Tensor, bytes]:
    """(x_hat in [0, 1], symbol bytes) of one tile from its two streams (:func:`decode_latents`).

    ``check`` sees the symbol bytes before the synthesis, a tile's costliest
    part, runs; it raises to stop there.
    """
    y_hat, symbols = decode_latents(coder, z_stream, y_stream, height, width)
    if check is not None:
        check(symbols)
    return coder.synthesize(y_hat), symbols


# ------------------------------------------------------------ images <-> bytes
#: container.PADDING_NAMES reversed: a utils.PADDINGS name to the header's byte.
PADDING_CODES = {name: code for code, name in container.PADDING_NAMES.items()}
#: The message of a latent checksum that does not match (a crafted file or a drifted decoder).
LATENT_MISMATCH = ("latent checksum mismatch: the decoded latents differ from the encoder's "
                   "(a crafted file, or a decoder whose arithmetic differs from the encoder's)")


def default_mode(net: torch.nn.Module, transforms: str = "float32") -> CodingMode:
    """What ``codec.py`` writes with these weights: exact integer entropy parameters where the weights carry
    their integer parameters (a release file made by updates.py), else float64 (``settings.DEFAULT_ENTROPY``'s
    fallback): calibrating here would give files that only a decoder reaching the same parameters reads."""
    entropy = DEFAULT_ENTROPY if getattr(net, "integer_parameters", None) is not None else FALLBACK_ENTROPY
    return CodingMode(entropy, transforms)


@dataclass
class Codec:
    """A loaded model, its ids, and how it codes.

    Files are written in format version 4 in the coding ``mode``
    (``models.coding.CodingMode``; default float64/float32: the published
    function, decodes on other machines; int8 computes exact integer entropy
    parameters, which decode on any machine; float32 entropy writes the
    published function, whose files decode only alike), padded with repeated edges
    (``padding``; zeros leave a dark frame along the decoded borders:
    docs/format.md, Padding); ``version=3`` writes the previous format (no
    int8), ``version=2`` the one before (zero padding, one latent checksum).  The mode's transforms (g_a, h_a when
    encoding, g_s when decoding) may differ between encoder and decoder; a file
    decodes in the entropy arithmetic its header names (version 1: float32)
    with this codec's transforms.  The codec's coders (``models.coding.Coder``,
    one per entropy arithmetic) convert what they run at first use: change the
    model's weights afterwards, and they refuse to code.  Decoding refuses a
    file claiming more than ``max_pixels`` pixels.
    """

    net: torch.nn.Module
    weights_id: bytes
    tile: int = DEFAULT_TILE
    mode: CodingMode = CodingMode.PORTABLE
    tables_id: bytes = field(default=b"")
    version: int = container.VERSION
    padding: str = ""  # a utils.PADDINGS name; default: "replicate" (version 3), "zero" (version 2)
    max_pixels: int = DEFAULT_MAX_PIXELS
    _coders: dict[CodingMode, Coder] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.mode, str):
            try:
                self.mode = CodingMode.parse(self.mode)
            except ValueError as e:
                raise CodecError(str(e)) from None
        if self.version not in (2, 3, 4):
            raise CodecError(f"writes format versions 2, 3 and 4, not {self.version}")
        if self.version < container.ENTROPY_SINCE[self.mode.entropy]:
            raise CodecError(f"format version {self.version} has no {self.mode.entropy} entropy arithmetic: "
                             f"write version {container.ENTROPY_SINCE[self.mode.entropy]}")
        self.padding = self.padding or ("replicate" if self.version >= 3 else "zero")
        if self.padding not in PADDINGS:
            raise CodecError(f"padding {self.padding!r}: choose from {', '.join(PADDINGS)}")
        if self.version < 3 and self.padding != "zero":
            raise CodecError(f"format version {self.version} records no padding: it is zero padding")
        self.tables_id = self.tables_id or tables_id(self.net)

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, mode: CodingMode | str | None = None,
             tile: int = DEFAULT_TILE, **options) -> "Codec":
        """The checkpoint's model; ``options`` are the other fields (``version``, ``max_pixels``, ...).  Without
        ``mode``: :func:`default_mode` for its weights with float32 transforms."""
        try:
            net = load_model(checkpoint)
        except CheckpointError as e:
            raise CodecError(str(e)) from None
        return cls(net, weights_id(net), tile, mode or default_mode(net), **options)

    @property
    def id_hex(self) -> str:
        return self.weights_id.hex()

    def coder(self, entropy: str) -> Coder:
        """The model's coder in the ``entropy`` arithmetic and this codec's transforms, made on first use."""
        mode = CodingMode(entropy, self.mode.transforms)
        if mode not in self._coders:
            self._coders[mode] = Coder(self.net, mode)
        return self._coders[mode]

    def tables_id_for(self, entropy: str) -> bytes:
        """The tables id files of the ``entropy`` arithmetic carry (the int8 one covers the integer parameters)."""
        if entropy != "int8":
            return self.tables_id
        return tables_id(self.net, self.coder(entropy).entropy_model.integer_parameters.digest())

    def encode(self, image: Image.Image) -> bytes:
        """The ``.tcm`` bytes of an RGB image.

        Each tile is cut from the image and padded on its own
        (``utils.padding.padded_region``: the same pixels as padding the whole
        image), so that beside the 8-bit image only one tile is ever held in
        float32 (docs/format.md, Memory).
        """
        width, height = image.size
        check_image_size(width, height)
        check_tile_side(self.tile)
        padding = centred_padding(height, width)
        left, _, top, _ = padding
        header = Header(self.weights_id, height, width, top, left, self.tile, version=self.version,
                        tables_id=self.tables_id_for(self.mode.entropy),
                        entropy=self.mode.entropy, padding_mode=PADDING_CODES[self.padding])
        return self.pack_tiles(header, lambda tile: to_tensor(padded_region(image, padding, self.padding, tile)))

    def pack_tiles(self, header: Header, tile_input: Callable[[tuple[int, int, int, int]], torch.Tensor]) -> bytes:
        """The file of ``header``'s tiles, each coded from ``tile_input((top, left, height, width))``: its padded
        pixels (NCHW in [0, 1]), asked for only when that tile is coded."""
        coder = self.coder(header.entropy)
        streams, crc = [], 0
        for k, tile in enumerate(header.tiles()):
            z, y, symbols = encode_tile(coder, tile_input(tile).contiguous())
            streams.append((z, y))
            if header.version >= 3:
                header.tile_crcs.append(container.tile_crc(header, k, symbols))
            crc = zlib.crc32(symbols, crc)
        header.latent_crc = crc if header.version < 3 else 0
        return container.pack(header, streams)

    def check_size(self, header: Header) -> None:
        """Refuse a file claiming more than ``max_pixels`` pixels before any decoding."""
        pixels = header.width * header.height
        if pixels > self.max_pixels:
            raise CodecError(
                f"the file claims a {header.width}x{header.height} image, {pixels} pixels, over the limit of "
                f"{self.max_pixels} that guards against decompression bombs (decoding it would take "
                f"{image_memory(pixels)} beside the model and one tile): if you trust the file, "
                f"pass --max-pixels {pixels}"
            )

    def check_weights(self, header: Header) -> None:
        """Refuse a file made with other weights or other coding tables, naming both."""
        if header.weights_id != self.weights_id:
            raise CodecError(
                f"made with weights {header.weights_id.hex()}, but the checkpoint has weights "
                f"{self.id_hex}: decode it with the checkpoint that compressed it"
            )
        if header.version < 2:
            return
        expected = self.tables_id_for(header.entropy)
        if header.tables_id != expected:
            why = ("a checkpoint without stored integer parameters calibrates its own, and another machine may "
                   "calibrate them differently" if header.entropy == "int8" else
                   "a training checkpoint builds its tables on load, and another machine may build them differently")
            raise CodecError(
                f"made with coding tables {header.tables_id.hex()}, but the checkpoint gives tables "
                f"{expected.hex()} (the same weights: {why}): decode with the release file that made it (updates.py)"
            )

    def decode(self, data: bytes) -> Image.Image:
        """The image in ``data``; raises ContainerError or CodecError, never writes anything.

        Work stops at the first inconsistent tile: a stream that is not a rANS
        stream (before any decoding), a stream that ends before its symbols do
        (at that slice), and in version 3 a tile crc that does not match (before
        that tile's synthesis).  A version-1 or 2 file's latent checksum is
        checked after the last tile.
        """
        header, streams = container.parse(data)
        self.check_size(header)
        self.check_weights(header)
        tiles = header.tiles()

        def where(k: int) -> str:
            return f"tile {k + 1} of {len(tiles)}: " if len(tiles) > 1 else ""

        for k, (z, y) in enumerate(streams):
            try:
                check_stream(z, "z")
                check_stream(y, "y")
            except CodecError as e:
                raise CodecError(f"{where(k)}{e}") from None
        coder = self.coder(header.entropy)
        canvas = Image.new("RGB", (header.width, header.height))  # 8-bit: a decoded tile is rounded as it comes
        crc = 0
        for k, ((t, l, th, tw), (z, y)) in enumerate(zip(tiles, streams)):

            def check(symbols: bytes, k: int = k) -> None:
                if container.tile_crc(header, k, symbols) != header.tile_crcs[k]:
                    raise CodecError(LATENT_MISMATCH)

            try:
                x_hat, symbols = decode_tile(coder, z, y, th, tw, check if header.version >= 3 else None)
            except CodecError as e:
                raise CodecError(f"{where(k)}{e}") from None
            part = image_part(header.padding, canvas.size, (t, l, th, tw))
            if part is not None:  # what utils.padding.crop keeps of the tile
                rows, cols, corner = part
                canvas.paste(to_image(x_hat[..., rows, cols]), corner)
            crc = zlib.crc32(symbols, crc)
        if header.version < 3 and crc != header.latent_crc:
            raise CodecError(LATENT_MISMATCH)
        return canvas
