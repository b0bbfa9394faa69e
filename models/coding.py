"""How an image is coded: a coding mode, and a coder that runs a model in it.

A :class:`CodingMode` names the arithmetic of the two parts of coding:

- ``entropy``: the networks between the decoded hyperprior and the coder's
  means and scales.  "float32" is the published function; "float64" computes
  the same function so that the summation order of another machine, thread
  count or library (which moves float32 results by ~1e-7) moves the means
  and scales by ~1e-16 only: a scale then lands on the other side of a table
  boundary, or a decoded latent drifts, about a billion times less often.  A
  decoder must use the encoder's (the ``.tcm`` header records it).
- ``transforms``: g_a, h_a (encoder) and g_s (decoder).  "float32", or
  "bfloat16" (faster on CPUs and GPUs that have it); encoder and decoder need
  not agree, since the symbols depend on the entropy arithmetic only.

Its one text form is ``"<entropy>/<transforms>"`` (``"float64/bfloat16"``),
parsed by :meth:`CodingMode.parse` and printed by ``str(mode)``: the spelling
of every tool's ``--coding`` option and JSON ``"coding"`` field.

A :class:`Coder` codes with a model in one mode.  It copies the networks the
mode runs in another dtype once, when it is made (the float64 entropy
networks, with :class:`layers.GemmConv2d` convolutions since torch has no fast
float64 convolution on the CPU; the bfloat16 transforms, faster than autocast,
which converts the weights on every call), and refuses to code once the
model's weights have changed under the copies (:attr:`Coder.stale`,
:meth:`Coder.refresh`).  ``TCM.compress``/``decompress`` stay the published
float32 function; a coder of :data:`CodingMode.PUBLISHED` computes exactly it.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from layers import use_gemm_convs
from layers.config import inference_layout

from .tcm import ENTROPY_PARAMETER_NETS, TCM, TRANSFORM_NETS, SliceCoder

#: The entropy arithmetics, by name.
ENTROPY_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: The transforms' arithmetics, by name.
TRANSFORMS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class CodingMode:
    """The arithmetic of coding: ``entropy`` (float32 | float64) and ``transforms`` (float32 | bfloat16)."""

    entropy: str = "float32"
    transforms: str = "float32"

    ENTROPIES: ClassVar[tuple[str, ...]] = tuple(ENTROPY_DTYPES)
    TRANSFORMS: ClassVar[tuple[str, ...]] = tuple(TRANSFORMS_DTYPES)
    #: The paper's function: float32/float32.
    PUBLISHED: ClassVar[CodingMode]
    #: Files that decode on other machines, float32 transforms: float64/float32.
    PORTABLE: ClassVar[CodingMode]

    def __post_init__(self) -> None:
        if self.entropy not in ENTROPY_DTYPES or self.transforms not in TRANSFORMS_DTYPES:
            raise ValueError(f"coding mode entropy={self.entropy!r}, transforms={self.transforms!r}: "
                             f"choose from {', '.join(map(str, self.all()))}")

    @classmethod
    def all(cls) -> list[CodingMode]:
        """Every mode, the published one first."""
        return [cls(e, t) for e in ENTROPY_DTYPES for t in TRANSFORMS_DTYPES]

    @classmethod
    def parse(cls, text: str) -> CodingMode:
        """The mode ``"<entropy>/<transforms>"`` names; a one-line ValueError for anything else."""
        entropy, sep, transforms = text.partition("/") if isinstance(text, str) else ("", "", "")
        if not sep or entropy not in ENTROPY_DTYPES or transforms not in TRANSFORMS_DTYPES:
            raise ValueError(f"coding mode {text!r}: choose from {', '.join(map(str, cls.all()))}")
        return cls(entropy, transforms)

    def __str__(self) -> str:
        return f"{self.entropy}/{self.transforms}"

    @property
    def entropy_dtype(self) -> torch.dtype:
        return ENTROPY_DTYPES[self.entropy]

    @property
    def transforms_dtype(self) -> torch.dtype:
        return TRANSFORMS_DTYPES[self.transforms]


CodingMode.PUBLISHED = CodingMode("float32", "float32")
CodingMode.PORTABLE = CodingMode("float64", "float32")


def coding_argument(text: str) -> CodingMode:
    """``type=`` of a ``--coding`` option: the mode, or argparse's one-line error."""
    try:
        return CodingMode.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class StaleCoderError(RuntimeError):
    """A coder asked to code after the model's weights changed under its copies."""


class NetworkCopies(nn.Module):
    """Copies of some of a model's networks in another dtype, never trained (not submodules of the model)."""

    def __init__(self, source: nn.Module, names: Sequence[str], dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        # Ordinary tensors (not inference tensors, whatever mode the caller is in).
        with torch.inference_mode(False), torch.no_grad():
            for name in names:
                setattr(self, name, copy.deepcopy(getattr(source, name)).to(dtype))
        self.requires_grad_(False)
        self.eval()


class Coder:
    """Compress and decompress with ``net`` in ``mode`` (a :class:`CodingMode` or its text; see the module's text).

    ``entropy_nets`` / ``transform_nets`` are the copies the mode runs (None:
    the model's own float32 networks).  The copies are made once, here; when
    a weight they were made from changes (in place, by an optimizer step or
    ``load_state_dict``, or by a move to another device) the coder is
    :attr:`stale`, refuses to code, and :meth:`refresh` copies again.
    """

    def __init__(self, net: TCM, mode: CodingMode | str = CodingMode.PUBLISHED):
        self.net = net
        self.mode = CodingMode.parse(mode) if isinstance(mode, str) else mode
        self.entropy_nets: NetworkCopies | None = None
        self.transform_nets: NetworkCopies | None = None
        self._copied_from: tuple = ()
        self.refresh()

    def __repr__(self) -> str:
        return f"Coder({type(self.net).__name__}, {self.mode})"

    # ------------------------------------------------------------------ the copies
    def _copied_names(self) -> list[str]:
        return [*(ENTROPY_PARAMETER_NETS if self.mode.entropy != "float32" else ()),
                *(TRANSFORM_NETS if self.mode.transforms != "float32" else ())]

    def _weights_state(self) -> tuple:
        """What identifies the weights the copies come from: each tensor's storage, in-place version and device."""
        params = [p for name in self._copied_names() for p in getattr(self.net, name).parameters()]
        return tuple((p.data_ptr(), p._version, p.device) for p in params)

    def refresh(self) -> None:
        """Copy the networks the mode runs in another dtype from the model's current weights."""
        self.entropy_nets = self.transform_nets = None
        if self.mode.entropy != "float32":
            self.entropy_nets = NetworkCopies(self.net, ENTROPY_PARAMETER_NETS, self.mode.entropy_dtype)
            with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, as the copies'
                use_gemm_convs(self.entropy_nets)
        if self.mode.transforms != "float32":
            self.transform_nets = NetworkCopies(self.net, TRANSFORM_NETS, self.mode.transforms_dtype)
        self._copied_from = self._weights_state()

    @property
    def stale(self) -> bool:
        """Whether the model's weights changed since the copies were made (never, for a mode without copies)."""
        return self._weights_state() != self._copied_from

    def _check_fresh(self) -> None:
        if self.stale:
            raise StaleCoderError(f"the model's weights changed after this {self.mode} coder copied them "
                                  "(an in-place change, an optimizer step, load_state_dict or a move to "
                                  "another device): call refresh() to copy them again")

    # ------------------------------------------------------------------ coding
    def analyse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(y, z) = (g_a(x), h_a(g_a(x))) in float32, computed in the mode's transforms."""
        self._check_fresh()
        if self.transform_nets is None:
            return self.net.analyse(x)
        nets = self.transform_nets
        y = nets.g_a(inference_layout(x).to(nets.dtype))
        return y.float(), nets.h_a(y).float()

    def synthesize(self, y_hat: Tensor) -> Tensor:
        """g_s(y_hat) in float32, computed in the mode's transforms, clamped to [0, 1]."""
        self._check_fresh()
        if self.transform_nets is None:
            return self.net.synthesize(y_hat)
        x_hat = self.transform_nets.g_s(inference_layout(y_hat.float()).to(self.transform_nets.dtype))
        return x_hat.float().clamp_(0, 1).contiguous()

    def code_slices(self, z_hat: Tensor, code_slice: SliceCoder) -> tuple[Tensor, list[Any]]:
        """``TCM.code_slices`` in the mode's entropy arithmetic (``z_hat`` is cast to it)."""
        self._check_fresh()
        if self.entropy_nets is None:
            return self.net.code_slices(z_hat, code_slice)
        return self.net.code_slices(z_hat.to(self.entropy_nets.dtype), code_slice, self.entropy_nets)

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """``TCM.compress`` in this mode (the same keys; the published mode calls it)."""
        if self.mode == CodingMode.PUBLISHED:
            return self.net.compress(x)
        self.net.check_size(x)
        y, z = self.analyse(x)
        return self.net.entropy_encode(y, z, self.entropy_nets)

    @torch.no_grad()
    def decompress(self, strings: list, shape) -> dict:
        """``TCM.decompress`` in this mode (the published mode calls it): the entropy arithmetic must be
        the encoder's, the transforms need not."""
        if self.mode == CodingMode.PUBLISHED:
            return self.net.decompress(strings, shape)
        y_hat, symbols = self.entropy_decode(strings, shape)
        return {"x_hat": self.synthesize(y_hat), "symbols": symbols}

    @torch.no_grad()
    def entropy_decode(self, strings: list, shape, open_stream: Callable[[bytes], Any] | None = None
                       ) -> tuple[Tensor, dict]:
        """``TCM.entropy_decode`` in this mode's entropy arithmetic: ``(y_hat, symbols)`` before the synthesis."""
        self._check_fresh()
        return self.net.entropy_decode(strings, shape, self.entropy_nets, open_stream)
