"""TCM: the learned image codec of Liu, Sun & Katto (CVPR 2023).

Analysis/synthesis transforms are stacks of TCM blocks; the entropy model is
channel-wise autoregressive over ``num_slices`` slices, each conditioned on the
hyperprior and the previously decoded slices through SWAtten.  Module names
match the authors' checkpoints so that they load with ``strict=True``.
``compress``/``decompress`` are the published float32 function;
``models.coding`` codes in the other arithmetics through the same per-slice
step (:meth:`TCM.code_slices`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from utils.padding import PAD_MULTIPLE

import torch
import torch.nn as nn
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import (
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv3x3,
    subpel_conv3x3,
)
from compressai.models.base import CompressionModel
from compressai.models.utils import conv
from compressai.ops import quantize_ste
from torch import Tensor

from layers import ConvTransBlock, SWAtten
from layers.config import inference_layout

from .coder_inputs import check_codable, check_finite, check_indexes, checked_tables
from .coding_tables import SearchedGaussianConditional, install_canonical_tables
from .config import TCMConfig
from .construction import load_weights, uninitialised_parameters
from .state_dict import weights_of

# code_slice(i, mu, scale) -> (quantised slice, anything else the caller keeps for slice i):
# the only thing forward, compress and decompress do differently inside the per-slice loop.
SliceCoder = Callable[[int, Tensor, Tensor], tuple[Tensor, Any]]

#: The networks between the decoded hyperprior z_hat and the coder's means and scales.
ENTROPY_PARAMETER_NETS = ("h_mean_s", "h_scale_s", "atten_mean", "atten_scale", "cc_mean_transforms",
                          "cc_scale_transforms", "lrp_transforms")
#: The analysis and synthesis transforms (the networks whose arithmetic may differ between encoder and decoder).
TRANSFORM_NETS = ("g_a", "h_a", "g_s")


def _short(keys: Sequence[str], n: int = 5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" … (+{len(keys) - n})" if len(keys) > n else "")


def _entropy_conv_stack(in_ch: int, out_ch: int, hidden: Sequence[int]) -> nn.Sequential:
    """conv3x3 -> GELU -> conv3x3 -> GELU -> conv3x3 (mean, scale and LRP transforms)."""
    return nn.Sequential(
        conv(in_ch, hidden[0], stride=1, kernel_size=3),
        nn.GELU(),
        conv(hidden[0], hidden[1], stride=1, kernel_size=3),
        nn.GELU(),
        conv(hidden[1], out_ch, stride=1, kernel_size=3),
    )


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

        def hyper_stage(n: int) -> list[nn.Module]:
            # The published hyper transforms use head_dim 32, window 4, no drop-path.
            return [ConvTransBlock(N, N, shape.hyper_head_dim, 4, 0.0, "W" if j % 2 == 0 else "SW")
                    for j in range(n)]

        self.h_a = nn.Sequential(
            ResidualBlockWithStride(M, 2 * N, 2),
            *hyper_stage(config[0]),
            conv3x3(2 * N, hyper_channels, stride=2),
        )
        self.h_mean_s = nn.Sequential(
            ResidualBlockUpsample(hyper_channels, 2 * N, 2),
            *hyper_stage(config[3]),
            subpel_conv3x3(2 * N, M, 2),
        )
        self.h_scale_s = nn.Sequential(
            ResidualBlockUpsample(hyper_channels, 2 * N, 2),
            *hyper_stage(config[3]),
            subpel_conv3x3(2 * N, M, 2),
        )

        s = self.slice_channels
        support = [M + s * self._num_support(i) for i in range(num_slices)]
        # Each SWAtten sits in a one-element Sequential only so that the keys are the
        # published ones (``atten_mean.<i>.0.…``).
        self.atten_mean = nn.ModuleList(
            nn.Sequential(SWAtten(c, c, 16, self.window_size, 0.0, inter_dim=atten_dim)) for c in support
        )
        self.atten_scale = nn.ModuleList(
            nn.Sequential(SWAtten(c, c, 16, self.window_size, 0.0, inter_dim=atten_dim)) for c in support
        )
        self.cc_mean_transforms = nn.ModuleList(_entropy_conv_stack(c, s, entropy_hidden) for c in support)
        self.cc_scale_transforms = nn.ModuleList(_entropy_conv_stack(c, s, entropy_hidden) for c in support)
        self.lrp_transforms = nn.ModuleList(
            _entropy_conv_stack(c + s, s, entropy_hidden) for c in support
        )
        self.gaussian_conditional = SearchedGaussianConditional(None)

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
        with uninitialised_parameters():  # every parameter is loaded below
            model = cls.from_config(TCMConfig.from_state_dict(weights))
        try:
            missing, unexpected = load_weights(model, weights)
        except RuntimeError as e:  # torch's size-mismatch report: many lines
            sizes = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
            shown = "; ".join(sizes[:2]) + (f" … (+{len(sizes) - 2})" if len(sizes) > 2 else "")
            raise ValueError("checkpoint does not fit the model: " + (shown or str(e).splitlines()[0])) from None
        if missing or unexpected:
            raise ValueError(f"checkpoint does not fit the model: missing keys [{_short(missing)}]; "
                             f"unexpected keys [{_short(unexpected)}]")
        return model

    # ------------------------------------------------------------------ helpers
    def _num_support(self, i: int) -> int:
        """How many decoded slices condition slice ``i``."""
        return i if self.max_support_slices < 0 else min(i, self.max_support_slices)

    @staticmethod
    def check_size(x: Tensor) -> None:
        h, w = x.shape[-2:]
        if h % PAD_MULTIPLE or w % PAD_MULTIPLE:
            raise ValueError(
                f"image sides must be multiples of {PAD_MULTIPLE}, got {h}x{w}: "
                f"pad with utils.padding.pad(x, {PAD_MULTIPLE}) and crop the result with utils.padding.crop"
            )

    def code_slices(self, z_hat: Tensor, code_slice: SliceCoder,
                    nets: nn.Module | None = None) -> tuple[Tensor, list[Any]]:
        """The channel-wise entropy model, slice by slice: ``(y_hat, per-slice results)``.

        For each slice: SWAtten on the hyperprior plus the decoded slices, mean
        and scale transforms, ``code_slice`` (which quantises, codes or decodes
        the slice: it returns the dequantised slice and whatever else its caller
        keeps, listed per slice in the result), then latent residual prediction.
        Forward (training included), compress and decompress all run through here;
        ``nets`` (default: this model) may be copies of :data:`ENTROPY_PARAMETER_NETS`
        in another dtype (``models.coding.Coder``), ``z_hat`` then in theirs.
        """
        nets = self if nets is None else nets
        z_hat = inference_layout(z_hat)
        latent_scales = nets.h_scale_s(z_hat)
        latent_means = nets.h_mean_s(z_hat)
        y_hat_slices: list[Tensor] = []
        results: list[Any] = []
        for i in range(self.num_slices):
            support = y_hat_slices[: self._num_support(i)]
            mean_support = nets.atten_mean[i](torch.cat([latent_means, *support], dim=1))
            mu = nets.cc_mean_transforms[i](mean_support)
            scale_support = nets.atten_scale[i](torch.cat([latent_scales, *support], dim=1))
            scale = nets.cc_scale_transforms[i](scale_support)
            y_hat_slice, result = code_slice(i, mu, scale)
            y_hat_slice = inference_layout(y_hat_slice)
            lrp = nets.lrp_transforms[i](torch.cat([mean_support, y_hat_slice], dim=1))
            y_hat_slices.append(inference_layout(y_hat_slice + 0.5 * torch.tanh(lrp)))
            results.append(result)
        return inference_layout(torch.cat(y_hat_slices, dim=1)), results

    def analyse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(y, z) = (g_a(x), h_a(g_a(x))) in float32 (the published transforms)."""
        y = self.g_a(inference_layout(x))
        z = self.h_a(y)
        return y.float(), z.float()

    def synthesize(self, y_hat: Tensor) -> Tensor:
        """g_s(y_hat) in float32 (the published transform), clamped to [0, 1]."""
        x_hat = self.g_s(inference_layout(y_hat.float()))
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

    def _cdf_tables(self) -> tuple[list, list, list]:
        """The Gaussian tables as the coder takes them, checked first (``models.coder_inputs``)."""
        cdf, cdf_length, offset = checked_tables(self.gaussian_conditional, "Gaussian")
        return cdf.tolist(), cdf_length.reshape(-1).int().tolist(), offset.reshape(-1).int().tolist()

    def _checked_bottleneck(self, channels: int) -> None:
        """Refuse bottleneck tables the coder cannot use for ``channels`` channels of z."""
        cdf, _, _ = checked_tables(self.entropy_bottleneck, "hyperprior")
        check_indexes(torch.arange(channels), cdf.shape[0], "the hyper-latent's channels")

    # ------------------------------------------------------------------ API
    def forward(self, x: Tensor) -> dict:
        self.check_size(x)
        y = self.g_a(inference_layout(x))
        z = self.h_a(y)
        _, z_likelihoods = self.entropy_bottleneck(z)
        z_offset = self.entropy_bottleneck._get_medians()
        z_hat = quantize_ste(z - z_offset) + z_offset
        y_slices = y.chunk(self.num_slices, dim=1)

        def code_slice(i: int, mu: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
            _, likelihood = self.gaussian_conditional(y_slices[i], scale, mu)
            return quantize_ste(y_slices[i] - mu) + mu, likelihood

        y_hat, y_likelihoods = self.code_slices(z_hat, code_slice)
        x_hat = self.g_s(y_hat).contiguous()  # NCHW out, as it came in
        return {
            "x_hat": x_hat,
            "likelihoods": {"y": torch.cat(y_likelihoods, dim=1), "z": z_likelihoods},
        }

    def _z_symbols(self, z_hat: Tensor) -> Tensor:
        """The integers the bottleneck coded for ``z_hat`` (flattened per image)."""
        medians = self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        return torch.round(z_hat - medians).int().flatten(1).cpu()

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """Entropy-code a padded batch: ``{"strings": [y_strings, z_strings], "shape"}``.

        The published float32 function (``models.coding.Coder`` codes in the
        other arithmetics).  Each image's five slices go into one rANS stream
        (the published layout).  Beside CompressAI's keys it returns what the
        encoder committed to, for tools that verify or checksum a decoder:
        ``y_hat`` (the latent the decoder must rebuild), ``symbols`` ({"y",
        "z"}: the coded integers, one row per image) and ``likelihoods``
        ({"y", "z"} of those symbols).
        """
        self.check_size(x)
        y, z = self.analyse(x)
        return self.entropy_encode(y, z)

    @torch.no_grad()
    def decompress(self, strings: list, shape) -> dict:
        """Inverse of :meth:`compress`; ``x_hat`` is clamped to [0, 1].

        Also returns the decoded ``symbols`` ({"y", "z"}), which equal the
        encoder's exactly when encoder and decoder computed the same entropy
        parameters.
        """
        y_hat, symbols = self.entropy_decode(strings, shape)
        return {"x_hat": self.synthesize(y_hat), "symbols": symbols}

    @torch.no_grad()
    def entropy_encode(self, y: Tensor, z: Tensor, nets: nn.Module | None = None) -> dict:
        """:meth:`compress`'s result for the analysed latents ``y`` and ``z`` (float32).

        ``nets`` are the entropy-parameter networks (:meth:`code_slices`); the
        latents are cast to their dtype.  Nothing that would crash or hang the
        C++ coder reaches it (``models.coder_inputs``).
        """
        cdf, cdf_lengths, offsets = self._cdf_tables()
        self._checked_bottleneck(z.shape[1])
        check_finite(y, "the latent y")
        check_codable(z - self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1), "the hyper-latent z")
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat, z_likelihoods = self.entropy_bottleneck(z, training=False)
        if nets is not None:
            dtype = _dtype_of(nets)
            y, z_hat = y.to(dtype), z_hat.to(dtype)
        y_slices = y.chunk(self.num_slices, dim=1)
        gc = self.gaussian_conditional

        def code_slice(i: int, mu: Tensor, scale: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
            check_codable(y_slices[i] - mu, f"slice {i} of the latent y less its means")
            check_finite(scale, f"the scales of slice {i}")
            q = gc.quantize(y_slices[i], "symbols", mu)
            likelihood = gc(y_slices[i], scale, mu, training=False)[1]
            return gc.dequantize(q, mu), (q.flatten(1), gc.build_indexes(scale).flatten(1), likelihood)

        y_hat, coded = self.code_slices(z_hat, code_slice, nets)
        symbols, indexes, y_likelihoods = zip(*coded)
        y_symbols = torch.cat(symbols, dim=1).int().cpu()
        all_indexes = torch.cat(indexes, dim=1).int().cpu()
        check_indexes(all_indexes, len(cdf), "the scales")
        y_strings = []
        for b in range(y.shape[0]):
            encoder = BufferedRansEncoder()
            encoder.encode_with_indexes(
                y_symbols[b].tolist(), all_indexes[b].tolist(), cdf, cdf_lengths, offsets
            )
            y_strings.append(encoder.flush())
        return {
            "strings": [y_strings, z_strings],
            "shape": z.shape[-2:],
            "y_hat": y_hat.float(),
            "symbols": {"y": y_symbols, "z": self._z_symbols(z_hat)},
            "likelihoods": {"y": torch.cat(y_likelihoods, dim=1).float(), "z": z_likelihoods},
        }

    @torch.no_grad()
    def entropy_decode(self, strings: list, shape, nets: nn.Module | None = None,
                       open_stream: Callable[[bytes], Any] | None = None) -> tuple[Tensor, dict]:
        """``(y_hat, symbols)`` of :meth:`decompress`, before the synthesis; ``nets`` as :meth:`entropy_encode`'s.

        ``open_stream(y_string)`` gives the object whose ``decode_stream`` (CompressAI's
        ``RansDecoder`` interface) reads one image's y symbols, slice by slice;
        by default a ``RansDecoder`` on the string (the file codec passes one that
        stops where a crafted stream runs out).
        """
        y_strings, z_strings = strings
        cdf, cdf_lengths, offsets = self._cdf_tables()
        self._checked_bottleneck(self.entropy_bottleneck.channels)
        z_hat = self.entropy_bottleneck.decompress(z_strings, shape)
        check_finite(z_hat, "the decoded hyper-latent z")
        if nets is not None:
            z_hat = z_hat.to(_dtype_of(nets))
        decoders = [(open_stream or _rans_decoder)(s) for s in y_strings]

        def code_slice(i: int, mu: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
            idx = self.slice_indexes(i, mu, scale, len(cdf))
            q = torch.stack([
                torch.tensor(dec.decode_stream(idx[b].reshape(-1).tolist(), cdf, cdf_lengths, offsets),
                             dtype=torch.int32)
                for b, dec in enumerate(decoders)
            ])
            return self.gaussian_conditional.dequantize(q.reshape(mu.shape).to(mu.device), mu), q

        y_hat, symbols = self.code_slices(z_hat, code_slice, nets)
        return y_hat, {"y": torch.cat(symbols, dim=1), "z": self._z_symbols(z_hat)}

    def slice_indexes(self, i: int, mu: Tensor, scale: Tensor, tables: int) -> Tensor:
        """The coding table of each latent of slice ``i`` (on the CPU), for a decoder; means and
        scales checked first, so that nothing reaches the coder that would crash it."""
        check_finite(mu, f"the means of slice {i}")
        check_finite(scale, f"the scales of slice {i}")
        idx = self.gaussian_conditional.build_indexes(scale).int().cpu()
        check_indexes(idx, tables, "the scales")
        return idx


def _rans_decoder(stream: bytes) -> RansDecoder:
    decoder = RansDecoder()
    decoder.set_stream(stream)
    return decoder


def _dtype_of(nets: nn.Module) -> torch.dtype:
    """The dtype copies of the entropy-parameter networks compute in."""
    return next(nets.parameters()).dtype
