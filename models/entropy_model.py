"""TCM's entropy model: the means and scales of the latent y, slice by slice, and their coding.

What it is.  Given the decoded hyperprior ``z_hat``, the hyper-synthesis
transforms (``h_mean_s``, ``h_scale_s``) give a first guess of y's means and
scales; y is then coded in ``num_slices`` channel slices, each conditioned on
that guess and on the slices decoded before it: SWAtten blocks
(``atten_mean``, ``atten_scale``), the mean and scale transforms
(``cc_mean_transforms``, ``cc_scale_transforms``), CompressAI's Gaussian
conditional with its coding tables (``gaussian_conditional``), and latent
residual prediction (``lrp_transforms``) that refines each decoded slice.  The
hyper-latent z itself is coded by the model's ``EntropyBottleneck`` (``TCM``).

Its three methods run one per-slice step (:meth:`ChannelEntropyModel._run_slices`),
which only differs in what it does with a slice's means and scales:

- ``forward(y, z_hat)``: the likelihoods of y, with straight-through rounding
  (training, estimated rates);
- ``compress(y, z_hat)``: one rANS stream per image, plus what the encoder
  committed to (the symbols, ``y_hat``, their likelihoods);
- ``decompress(streams, z_hat)``: ``y_hat`` and the symbols from one stream
  *reader* per image: anything with CompressAI's ``RansDecoder.decode_stream``
  (:class:`SymbolReader`), or the bytes, which get a ``RansDecoder``.  A caller
  that must bound what a crafted stream makes the decoder do passes its own
  reader (the file codec does).

How a coding mode converts it.  The module computes in one *arithmetic*
(:attr:`arithmetic`): "float32" is the published function.
:meth:`converted` returns a copy of the whole module in another arithmetic
(float64: the parameter networks cast to float64, their convolutions per-tap
matrix products) with the kernels of a :class:`~layers.config.KernelPolicy`
fixed on it; the Gaussian conditional and its tables stay float32 in every
arithmetic, since the coder reads them.  ``models.coding.Coder`` holds such a
copy; the model keeps its float32 module, and its state dict keeps the
published entry names (``models.state_dict``).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Protocol, Sequence

import torch
import torch.nn as nn
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyModel
from compressai.layers import ResidualBlockUpsample, subpel_conv3x3
from compressai.models.utils import conv
from compressai.ops import quantize_ste
from torch import Tensor

from layers import ConvTransBlock, SWAtten
from layers.config import DEFAULT_KERNELS, KernelPolicy, apply_kernel_policy

from .coder_inputs import check_codable, check_finite, check_indexes, checked_tables
from .coding_tables import SearchedGaussianConditional
from .config import TCMConfig

#: The arithmetics :meth:`ChannelEntropyModel.converted` makes, by name, with the dtype they compute in.
FLOAT_ARITHMETICS = {"float32": torch.float32, "float64": torch.float64}

#: step(i, means, scales) -> (the slice's y_hat before LRP, what the caller keeps for slice i).
SliceStep = Callable[[int, Tensor, Tensor], tuple[Tensor, Any]]


class SymbolReader(Protocol):
    """One image's y stream, read slice by slice (CompressAI's ``RansDecoder`` is one)."""

    def decode_stream(self, indexes: list[int], cdf: list[list[int]], cdf_lengths: list[int],
                      offsets: list[int]) -> list[int]: ...


def rans_reader(stream: bytes) -> RansDecoder:
    """A ``RansDecoder`` on ``stream``: the reader of a trusted stream."""
    decoder = RansDecoder()
    decoder.set_stream(stream)
    return decoder


def reader_of(stream: bytes | SymbolReader) -> SymbolReader:
    """``stream`` itself if it is a reader, else a :func:`rans_reader` on its bytes."""
    return rans_reader(stream) if isinstance(stream, (bytes, bytearray)) else stream


def hyper_stage(config: TCMConfig, blocks: int) -> list[nn.Module]:
    """The TCM blocks of the hyper transforms (h_a and the hyper-synthesis): window 4, no drop-path."""
    return [ConvTransBlock(config.N, config.N, config.hyper_head_dim, 4, 0.0, "W" if j % 2 == 0 else "SW")
            for j in range(blocks)]


def _conv_stack(in_ch: int, out_ch: int, hidden: Sequence[int]) -> nn.Sequential:
    """conv3x3 -> GELU -> conv3x3 -> GELU -> conv3x3 (mean, scale and LRP transforms)."""
    return nn.Sequential(
        conv(in_ch, hidden[0], stride=1, kernel_size=3),
        nn.GELU(),
        conv(hidden[0], hidden[1], stride=1, kernel_size=3),
        nn.GELU(),
        conv(hidden[1], out_ch, stride=1, kernel_size=3),
    )


class ChannelEntropyModel(nn.Module):
    """The channel-wise autoregressive entropy model of TCM (see the module's text)."""

    def __init__(self, config: TCMConfig, window: int = 8):
        super().__init__()
        c = config
        self.num_slices = c.num_slices
        self.max_support_slices = c.max_support_slices
        self.slice_channels = c.M // c.num_slices

        def hyper_synthesis() -> nn.Sequential:
            return nn.Sequential(ResidualBlockUpsample(c.hyper_channels, 2 * c.N, 2), *hyper_stage(c, c.config[3]),
                                 subpel_conv3x3(2 * c.N, c.M, 2))

        # The published entry names and order (models.state_dict maps them).
        self.h_mean_s = hyper_synthesis()
        self.h_scale_s = hyper_synthesis()
        s = self.slice_channels
        support = [c.M + s * self.num_support(i) for i in range(c.num_slices)]
        # Each SWAtten sits in a one-element Sequential only so that the keys are the
        # published ones (``atten_mean.<i>.0.…``).
        self.atten_mean = nn.ModuleList(
            nn.Sequential(SWAtten(n, n, 16, window, 0.0, inter_dim=c.atten_dim)) for n in support)
        self.atten_scale = nn.ModuleList(
            nn.Sequential(SWAtten(n, n, 16, window, 0.0, inter_dim=c.atten_dim)) for n in support)
        self.cc_mean_transforms = nn.ModuleList(_conv_stack(n, s, c.entropy_hidden) for n in support)
        self.cc_scale_transforms = nn.ModuleList(_conv_stack(n, s, c.entropy_hidden) for n in support)
        self.lrp_transforms = nn.ModuleList(_conv_stack(n + s, s, c.entropy_hidden) for n in support)
        self.gaussian_conditional = SearchedGaussianConditional(None)
        #: The arithmetic the parameter networks compute in (:meth:`converted`).
        self.arithmetic = "float32"
        #: The memory layout of its inputs (its layers hold the rest of the policy).
        self.kernels: KernelPolicy = DEFAULT_KERNELS

    def num_support(self, i: int) -> int:
        """How many decoded slices condition slice ``i``."""
        return i if self.max_support_slices < 0 else min(i, self.max_support_slices)

    def parameter_networks(self) -> list[nn.Module]:
        """The networks between ``z_hat`` and the means and scales: every part but the coder's tables."""
        return [m for m in self.children() if not isinstance(m, EntropyModel)]

    @property
    def dtype(self) -> torch.dtype:
        """What the parameter networks' inputs are cast to."""
        return next(self.h_mean_s.parameters()).dtype

    # ------------------------------------------------------------------ conversion
    def converted(self, arithmetic: str, kernels: KernelPolicy | None = None) -> "ChannelEntropyModel":
        """This module in ``arithmetic`` with ``kernels`` (default: its own) fixed on it.

        "float32" with its own kernels is the module itself; anything else is a
        copy (ordinary tensors, no gradients, eval mode) that never changes with
        the module: ``models.coding.Coder`` watches the weights it came from.
        """
        if arithmetic not in FLOAT_ARITHMETICS:
            raise ValueError(f"entropy arithmetic {arithmetic!r}: choose from {', '.join(FLOAT_ARITHMETICS)}")
        kernels = self.kernels if kernels is None else kernels
        if arithmetic == self.arithmetic and kernels == self.kernels:
            return self
        with torch.inference_mode(False), torch.no_grad():
            out = copy.deepcopy(self)
            for network in out.parameter_networks():
                network.to(FLOAT_ARITHMETICS[arithmetic])
        out.requires_grad_(False).eval()
        out.arithmetic = arithmetic
        return apply_kernel_policy(out, kernels)

    # ------------------------------------------------------------------ the per-slice step
    def _run_slices(self, z_hat: Tensor, step: SliceStep) -> tuple[Tensor, list[Any]]:
        """``(y_hat, per-slice results)``: for each slice, SWAtten on the hyperprior plus the decoded
        slices, mean and scale transforms, ``step`` (which quantises, codes or decodes the slice), then
        latent residual prediction.  ``z_hat`` is cast to the module's dtype."""
        layout = self.kernels.layout
        z_hat = layout(z_hat.to(self.dtype))
        latent_scales = self.h_scale_s(z_hat)
        latent_means = self.h_mean_s(z_hat)
        y_hat_slices: list[Tensor] = []
        results: list[Any] = []
        for i in range(self.num_slices):
            support = y_hat_slices[: self.num_support(i)]
            mean_support = self.atten_mean[i](torch.cat([latent_means, *support], dim=1))
            mu = self.cc_mean_transforms[i](mean_support)
            scale_support = self.atten_scale[i](torch.cat([latent_scales, *support], dim=1))
            scale = self.cc_scale_transforms[i](scale_support)
            y_hat_slice, result = step(i, mu, scale)
            y_hat_slice = layout(y_hat_slice)
            lrp = self.lrp_transforms[i](torch.cat([mean_support, y_hat_slice], dim=1))
            y_hat_slices.append(layout(y_hat_slice + self.lrp_residual(lrp)))
            results.append(result)
        return layout(torch.cat(y_hat_slices, dim=1)), results

    def lrp_residual(self, lrp: Tensor) -> Tensor:
        """What latent residual prediction adds to a decoded slice: 0.5 * tanh of its transform's output."""
        return 0.5 * torch.tanh(lrp)

    # ------------------------------------------------------------------ the three methods
    def forward(self, y: Tensor, z_hat: Tensor) -> dict:
        """``{"y_hat", "likelihoods"}``: y rounded straight-through around its means, and its likelihoods."""
        y_slices = y.chunk(self.num_slices, dim=1)
        gc = self.gaussian_conditional

        def step(i: int, mu: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
            _, likelihood = gc(y_slices[i], scale, mu)
            return quantize_ste(y_slices[i] - mu) + mu, likelihood

        y_hat, likelihoods = self._run_slices(z_hat, step)
        return {"y_hat": y_hat, "likelihoods": torch.cat(likelihoods, dim=1)}

    def coding_tables(self) -> tuple[list, list, list]:
        """The Gaussian tables as the rANS coder takes them, checked first (``models.coder_inputs``)."""
        cdf, cdf_length, offset = checked_tables(self.gaussian_conditional, "Gaussian")
        return cdf.tolist(), cdf_length.reshape(-1).int().tolist(), offset.reshape(-1).int().tolist()

    @torch.no_grad()
    def compress(self, y: Tensor, z_hat: Tensor) -> dict:
        """``{"strings", "y_hat", "symbols", "likelihoods"}`` of y (float32) given the decoded hyperprior.

        One rANS stream per image, the slices one after the other (the
        published layout); ``symbols`` one row of integers per image.  Nothing
        that would crash or hang the C++ coder reaches it (``models.coder_inputs``).
        """
        cdf, cdf_lengths, offsets = self.coding_tables()
        check_finite(y, "the latent y")
        y_slices = y.to(self.dtype).chunk(self.num_slices, dim=1)
        gc = self.gaussian_conditional

        def step(i: int, mu: Tensor, scale: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
            check_codable(y_slices[i] - mu, f"slice {i} of the latent y less its means")
            check_finite(scale, f"the scales of slice {i}")
            q = gc.quantize(y_slices[i], "symbols", mu)
            likelihood = gc(y_slices[i], scale, mu, training=False)[1]
            return gc.dequantize(q, mu), (q.flatten(1), gc.build_indexes(scale).flatten(1), likelihood)

        y_hat, coded = self._run_slices(z_hat, step)
        symbols, indexes, likelihoods = zip(*coded)
        y_symbols = torch.cat(symbols, dim=1).int().cpu()
        all_indexes = torch.cat(indexes, dim=1).int().cpu()
        check_indexes(all_indexes, len(cdf), "the scales")
        strings = []
        for b in range(y.shape[0]):
            encoder = BufferedRansEncoder()
            encoder.encode_with_indexes(y_symbols[b].tolist(), all_indexes[b].tolist(), cdf, cdf_lengths, offsets)
            strings.append(encoder.flush())
        return {"strings": strings, "y_hat": y_hat.float(), "symbols": y_symbols,
                "likelihoods": torch.cat(likelihoods, dim=1).float()}

    @torch.no_grad()
    def decompress(self, streams: Sequence[bytes | SymbolReader], z_hat: Tensor,
                   keep_parameters: bool = False) -> dict:
        """``{"y_hat", "symbols"}`` from one stream (bytes or a :class:`SymbolReader`) per image.

        ``symbols`` equal the encoder's exactly when this module computes the
        encoder's means and scales.  ``keep_parameters`` adds each slice's
        ``"means"`` and ``"scales"`` (this module's dtype), for tools that
        study them.
        """
        cdf, cdf_lengths, offsets = self.coding_tables()
        readers = [reader_of(s) for s in streams]
        gc = self.gaussian_conditional
        kept: dict[str, list[Tensor]] = {"means": [], "scales": []}

        def step(i: int, mu: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
            check_finite(mu, f"the means of slice {i}")
            check_finite(scale, f"the scales of slice {i}")
            idx = gc.build_indexes(scale).int().cpu()
            check_indexes(idx, len(cdf), "the scales")
            q = torch.stack([
                torch.tensor(r.decode_stream(idx[b].reshape(-1).tolist(), cdf, cdf_lengths, offsets),
                             dtype=torch.int32)
                for b, r in enumerate(readers)
            ])
            if keep_parameters:
                kept["means"].append(mu)
                kept["scales"].append(scale)
            return gc.dequantize(q.reshape(mu.shape).to(mu.device), mu), q

        y_hat, symbols = self._run_slices(z_hat, step)
        out = {"y_hat": y_hat.float(), "symbols": torch.cat(symbols, dim=1)}
        return {**out, **kept} if keep_parameters else out
