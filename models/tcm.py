"""TCM: the learned image codec of Liu, Sun & Katto (CVPR 2023).

Analysis/synthesis transforms are stacks of TCM blocks; the hyper-latent z
is coded by CompressAI's ``EntropyBottleneck`` and the latent y by the
channel-wise entropy model (``models.entropy_model``, one submodule).  The
state dict has the authors' entry names, so that their checkpoints load with
``strict=True`` (``models.state_dict``).  ``compress``/``decompress`` are the
published float32 function; ``models.coding`` codes in the other
arithmetics with a converted copy of the entropy model
(:meth:`TCM.encode_latents`, :meth:`TCM.decode_latents`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from utils.padding import PAD_MULTIPLE

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import ResidualBlockUpsample, ResidualBlockWithStride, conv3x3, subpel_conv3x3
from compressai.models import CompressionModel
from compressai.ops import quantize_ste
from torch import Tensor

from layers import ConvTransBlock
from layers.config import DEFAULT_KERNELS, KernelPolicy

from .coder_inputs import CoderInputError, check_codable, check_finite, check_indexes, checked_tables
from .coding_tables import SearchedGaussianConditional, install_canonical_tables
from .config import TCMConfig
from .entropy_model import ChannelEntropyModel, SymbolReader, hyper_stage, reader_of
from .state_dict import (ENTROPY_MODEL, load_published_names, module_keys, published_key, save_published_names,
                         weights_of)

#: The analysis and synthesis transforms (the networks whose arithmetic may differ between encoder and decoder).
TRANSFORM_NETS = ("g_a", "h_a", "g_s")


def _short(keys: Sequence[str], n: int = 5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" … (+{len(keys) - n})" if len(keys) > n else "")


class TCM(CompressionModel):
    """Mixed Transformer-CNN learned image codec.

    The arguments are those of :class:`~models.config.TCMConfig` (defaults: the
    published TCM-Large, N=128; Small and Middle differ only in N, 64 and 96);
    an unknown argument is a TypeError, a shape that cannot be built a ValueError.
    """

    def __init__(
        self,
        config: Sequence[int] = TCMConfig.config,
        head_dim: Sequence[int] = TCMConfig.head_dim,
        drop_path_rate: float = TCMConfig.drop_path_rate,
        N: int = TCMConfig.N,
        M: int = TCMConfig.M,
        num_slices: int = TCMConfig.num_slices,
        max_support_slices: int = TCMConfig.max_support_slices,
        hyper_channels: int = TCMConfig.hyper_channels,
        atten_dim: int = TCMConfig.atten_dim,
        entropy_hidden: Sequence[int] = TCMConfig.entropy_hidden,
    ):
        super().__init__()
        shape = TCMConfig(tuple(config), tuple(head_dim), drop_path_rate, N, M, num_slices, max_support_slices,
                          hyper_channels, atten_dim, tuple(entropy_hidden))
        self.model_config = shape
        self.config = list(shape.config)  # the published attribute names
        self.head_dim = list(shape.head_dim)
        self.window_size = 8
        self.N, self.M = N, M
        self.num_slices = num_slices
        self.max_support_slices = max_support_slices
        self.slice_channels = M // num_slices
        # First, so that the state_dict order matches the published checkpoints.
        self.entropy_bottleneck = EntropyBottleneck(hyper_channels)

        dpr = torch.linspace(0, drop_path_rate, sum(config)).tolist()
        starts = [sum(config[:i]) for i in range(len(config))]

        def stage(i: int) -> list[nn.Module]:
            return [
                ConvTransBlock(N, N, self.head_dim[i], self.window_size, dpr[starts[i] + j], "W" if j % 2 == 0 else "SW")
                for j in range(config[i])
            ]

        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, 2 * N, 2),
            *stage(0),
            ResidualBlockWithStride(2 * N, 2 * N, stride=2),
            *stage(1),
            ResidualBlockWithStride(2 * N, 2 * N, stride=2),
            *stage(2),
            conv3x3(2 * N, M, stride=2),
        )
        self.g_s = nn.Sequential(
            ResidualBlockUpsample(M, 2 * N, 2),
            *stage(3),
            ResidualBlockUpsample(2 * N, 2 * N, 2),
            *stage(4),
            ResidualBlockUpsample(2 * N, 2 * N, 2),
            *stage(5),
            subpel_conv3x3(2 * N, 3, 2),
        )

        self.h_a = nn.Sequential(
            ResidualBlockWithStride(M, 2 * N, 2),
            *hyper_stage(shape, config[0]),
            conv3x3(2 * N, hyper_channels, stride=2),
        )
        #: Means and scales of y from the decoded hyperprior, slice by slice, and their coding tables.
        self.entropy_model = ChannelEntropyModel(shape, self.window_size)
        #: The memory layout of the transforms' inputs (the layers hold the rest of the policy).
        self.kernels: KernelPolicy = DEFAULT_KERNELS
        #: The integer entropy model's parameters (``models.integer_entropy``) when the weights carry them.
        self.integer_parameters: dict[str, Tensor] | None = None
        self._register_state_dict_hook(save_published_names)
        self.register_load_state_dict_pre_hook(load_published_names)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: TCMConfig) -> "TCM":
        return cls(**dataclasses.asdict(config))

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any]) -> "TCM":
        """A model of the shape the weights give, with the weights loaded strictly.

        Takes what ``torch.load`` gives for any checkpoint ``load_model`` reads
        (``models.state_dict``): a bare state dict or a training checkpoint's
        dict, the authors' ``module.`` keys and 2023 entry names, half or
        float8 storage.  The entropy tables are the file's; run ``update()``
        where it has none.  A ValueError (one line) says what does not fit:
        the entries missing and those found, or the shapes that differ.
        """
        weights = weights_of(state_dict)
        model = cls.from_config(TCMConfig.from_state_dict(weights))
        try:
            missing, unexpected = model.load_state_dict(weights, strict=False)
        except RuntimeError as e:  # torch's size-mismatch report: many lines
            sizes = [line.strip().replace(f"for {ENTROPY_MODEL}.", "for ") for line in str(e).splitlines()
                     if "size mismatch" in line]
            shown = "; ".join(sizes[:2]) + (f" … (+{len(sizes) - 2})" if len(sizes) > 2 else "")
            raise ValueError("checkpoint does not fit the model: " + (shown or str(e).splitlines()[0])) from None
        if missing or unexpected:
            raise ValueError(f"checkpoint does not fit the model: missing keys [{_short(map(published_key, missing))}]; "
                             f"unexpected keys [{_short(unexpected)}]")
        return model

    # ------------------------------------------------------------------ state dict
    @property
    def gaussian_conditional(self) -> SearchedGaussianConditional:
        """The entropy model's Gaussian conditional (CompressAI models' attribute)."""
        return self.entropy_model.gaussian_conditional

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True):
        """CompressAI's ``load_state_dict`` (tables resized to the entries') for the published entry names."""
        return super().load_state_dict(module_keys(self, state_dict), strict=strict)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def check_size(x: Tensor) -> None:
        h, w = x.shape[-2:]
        if h % PAD_MULTIPLE or w % PAD_MULTIPLE:
            raise ValueError(
                f"image sides must be multiples of {PAD_MULTIPLE}, got {h}x{w}: "
                f"pad with utils.padding.pad(x, {PAD_MULTIPLE}) and crop the result with utils.padding.crop"
            )

    @staticmethod
    def check_image(x: Tensor) -> None:
        """Refuse what ``compress`` cannot code as an image: sides that are not multiples of 128, values
        outside [0, 1] (8-bit values not divided by 255, say) or not numbers."""
        TCM.check_size(x)
        if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
            low, high = float(x.nan_to_num(nan=-1.0).min()), float(x.nan_to_num(nan=2.0).max())
            hint = ": divide 8-bit values by 255" if high > 1 and high <= 255 and low >= 0 else ""
            raise CoderInputError(f"images are coded from values in [0, 1], got values in [{low:g}, {high:g}]"
                                  f"{' (or NaN)' if bool(x.isnan().any()) else ''}{hint}")

    def analyse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(y, z) = (g_a(x), h_a(g_a(x))) in float32 (the published transforms)."""
        y = self.g_a(self.kernels.layout(x))
        z = self.h_a(y)
        return y.float(), z.float()

    def synthesize(self, y_hat: Tensor) -> Tensor:
        """g_s(y_hat) in float32 (the published transform), clamped to [0, 1]."""
        x_hat = self.g_s(self.kernels.layout(y_hat.float()))
        return x_hat.float().clamp_(0, 1).contiguous()

    def update(self, scale_table: Tensor | None = None, force: bool = False, update_quantiles: bool = False) -> bool:
        """CompressAI's ``update``, with the paper's Gaussian tables taken from the stored copy.

        The bottleneck's tables come from its learned densities and are built
        here; the Gaussian ones depend on the scale table alone, and computing
        them gives other last bits on other machines (``models.coding_tables``).
        """
        gc = self.gaussian_conditional
        rebuilt = force or gc._offset.numel() == 0
        updated = super().update(scale_table, force=force, update_quantiles=update_quantiles)
        if rebuilt and scale_table is None:
            install_canonical_tables(gc)
        return updated

    def _bottleneck_tables(self, channels: int) -> tuple[list, list, list]:
        """The bottleneck's tables as the coder takes them, refused if unusable for ``channels`` channels of z."""
        cdf, cdf_length, offset = checked_tables(self.entropy_bottleneck, "hyperprior")
        check_indexes(torch.arange(channels), cdf.shape[0], "the hyper-latent's channels")
        return cdf.tolist(), cdf_length.reshape(-1).int().tolist(), offset.reshape(-1).int().tolist()

    def _z_symbols(self, z_hat: Tensor) -> Tensor:
        """The integers the bottleneck coded for ``z_hat`` (flattened per image)."""
        medians = self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        return torch.round(z_hat - medians).int().flatten(1).cpu()

    # ------------------------------------------------------------------ API
    def forward(self, x: Tensor) -> dict:
        self.check_size(x)
        y = self.g_a(self.kernels.layout(x))
        z = self.h_a(y)
        _, z_likelihoods = self.entropy_bottleneck(z)
        z_offset = self.entropy_bottleneck._get_medians()
        z_hat = quantize_ste(z - z_offset) + z_offset
        out = self.entropy_model(y, z_hat)
        x_hat = self.g_s(out["y_hat"]).contiguous()  # NCHW out, as it came in
        return {"x_hat": x_hat, "likelihoods": {"y": out["likelihoods"], "z": z_likelihoods}}

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """Entropy-code a padded batch of images in [0, 1]: ``{"strings": [y_strings, z_strings], "shape"}``.

        The published float32 function (``models.coding.Coder`` codes in the
        other arithmetics).  Each image's five slices go into one rANS stream
        (the published layout).  Beside CompressAI's keys it returns what the
        encoder committed to, for tools that verify or checksum a decoder:
        ``y_hat`` (the latent the decoder must rebuild), ``symbols`` ({"y",
        "z"}: the coded integers, one row per image) and ``likelihoods``
        ({"y", "z"} of those symbols).
        """
        self.check_image(x)
        y, z = self.analyse(x)
        return self.encode_latents(y, z)

    @torch.no_grad()
    def decompress(self, strings: list, shape) -> dict:
        """Inverse of :meth:`compress`; ``x_hat`` is clamped to [0, 1].

        Also returns the decoded ``symbols`` ({"y", "z"}), which equal the
        encoder's exactly when encoder and decoder computed the same entropy
        parameters.
        """
        out = self.decode_latents(strings, shape)
        return {"x_hat": self.synthesize(out["y_hat"]), "symbols": out["symbols"]}

    @torch.no_grad()
    def encode_latents(self, y: Tensor, z: Tensor, entropy_model: ChannelEntropyModel | None = None) -> dict:
        """:meth:`compress`'s result for the analysed latents ``y`` and ``z`` (float32).

        z is coded by the bottleneck, y by ``entropy_model`` (default: the
        model's own; a ``Coder`` passes its converted copy).  Nothing that would
        crash or hang the C++ coder reaches it (``models.coder_inputs``).
        """
        entropy_model = self.entropy_model if entropy_model is None else entropy_model
        self._bottleneck_tables(z.shape[1])
        check_codable(z - self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1), "the hyper-latent z")
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat, z_likelihoods = self.entropy_bottleneck(z, training=False)
        out = entropy_model.compress(y, z_hat)
        return {
            "strings": [out["strings"], z_strings],
            "shape": z.shape[-2:],
            "y_hat": out["y_hat"],
            "symbols": {"y": out["symbols"], "z": self._z_symbols(z_hat)},
            "likelihoods": {"y": out["likelihoods"], "z": z_likelihoods},
        }

    def decode_hyperprior(self, streams: Sequence[bytes | SymbolReader], shape) -> Tensor:
        """z_hat (float32) from one z stream (bytes or a reader, ``models.entropy_model``) per image."""
        eb = self.entropy_bottleneck
        cdf, cdf_lengths, offsets = self._bottleneck_tables(eb.channels)
        size = (1, eb.channels, *shape)
        indexes = eb._build_indexes(size).reshape(-1).int().tolist()
        q = torch.stack([
            torch.tensor(reader_of(s).decode_stream(indexes, cdf, cdf_lengths, offsets), dtype=torch.int32)
            for s in streams
        ]).reshape(len(streams), *size[1:])
        medians = eb._extend_ndims(eb._get_medians().detach(), len(shape))
        z_hat = eb.dequantize(q.to(medians.device), medians.expand(len(streams), *([-1] * (len(shape) + 1))))
        check_finite(z_hat, "the decoded hyper-latent z")
        return z_hat

    @torch.no_grad()
    def decode_latents(self, strings: list, shape, entropy_model: ChannelEntropyModel | None = None,
                       keep_parameters: bool = False) -> dict:
        """``{"y_hat", "symbols"}`` of :meth:`decompress`, before the synthesis.

        ``strings`` are ``[y streams, z streams]``, each bytes or a stream
        reader (``models.entropy_model.SymbolReader``: the file codec's stop
        where a crafted stream runs out); ``entropy_model`` and
        ``keep_parameters`` as :meth:`encode_latents`' and
        ``ChannelEntropyModel.decompress``'.
        """
        entropy_model = self.entropy_model if entropy_model is None else entropy_model
        y_streams, z_streams = strings
        z_hat = self.decode_hyperprior(z_streams, shape)
        out = entropy_model.decompress(y_streams, z_hat, keep_parameters)
        return {**out, "symbols": {"y": out["symbols"], "z": self._z_symbols(z_hat)}}
