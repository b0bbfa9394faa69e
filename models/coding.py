"""How an image is coded: a coding mode, and a coder that runs a model in it.

A :class:`CodingMode` names the arithmetic of the two parts of coding:

- ``entropy``: the networks between the decoded hyperprior and the coder's
  means and scales.  "float32" is the published function; "int8" computes it
  quantised after training in exact integer arithmetic
  (``models.integer_entropy``): every machine computes the same integers, so
  its files decode anywhere by construction, and its int8 GEMMs are the
  fastest; "float64" computes the published function so that the summation
  order of another machine, thread count or library (which moves float32
  results by ~1e-7) moves the means and scales by ~1e-16 only: a scale then
  lands on the other side of a table boundary, or a decoded latent drifts,
  about a billion times less often.  A decoder must use the encoder's (the
  ``.tcm`` header records it).
- ``transforms``: g_a, h_a (encoder) and g_s (decoder).  "float32", or
  "bfloat16" (faster on CPUs and GPUs that have it); encoder and decoder need
  not agree, since the symbols depend on the entropy arithmetic only.

Its one text form is ``"<entropy>/<transforms>"`` (``"float64/bfloat16"``),
parsed by :meth:`CodingMode.parse` and printed by ``str(mode)``: the spelling
of every tool's ``--coding`` option and JSON ``"coding"`` field.

A :class:`Coder` codes with a model in one mode.  It converts what the mode
runs in another arithmetic once, when it is made: the model's entropy model as
a whole (``ChannelEntropyModel.converted``: float64 parameter networks, with
:class:`layers.GemmConv2d` convolutions since torch has no fast float64
convolution on the CPU; or ``models.integer_entropy.integer_entropy_model``:
the integer networks, from the integer parameters the model carries, or
calibrated on built-in sample photographs when it carries none) and the
bfloat16 transforms (faster than autocast, which converts the weights on
every call).  The copies keep the model's kernel
policy (``layers.config``) as it was then.  It refuses to code once the
model's weights have changed under the copies (:attr:`Coder.stale`,
:meth:`Coder.refresh`).  ``TCM.compress``/``decompress`` stay the published
float32 function; a coder of :data:`CodingMode.PUBLISHED` computes exactly it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from layers.copies import converted_copy

from .entropy_model import FLOAT_ARITHMETICS, ChannelEntropyModel
from .integer_entropy import integer_entropy_model
from .tcm import TCM, TRANSFORM_NETS

#: The entropy arithmetics, by name, with the dtype of the values they hand the coder.
ENTROPY_DTYPES = {**FLOAT_ARITHMETICS, "int8": torch.float32}
#: The transforms' arithmetics, by name.
TRANSFORMS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class CodingMode:
    """The arithmetic of coding: ``entropy`` (float32 | float64 | int8) and ``transforms`` (float32 | bfloat16)."""

    entropy: str = "float32"
    transforms: str = "float32"

    ENTROPIES: ClassVar[tuple[str, ...]] = tuple(ENTROPY_DTYPES)
    TRANSFORMS: ClassVar[tuple[str, ...]] = tuple(TRANSFORMS_DTYPES)
    #: The paper's function: float32/float32.
    PUBLISHED: ClassVar[CodingMode]
    #: Files that decode on other machines, float32 transforms: float64/float32.
    PORTABLE: ClassVar[CodingMode]
    #: Exact integer entropy parameters, float32 transforms: int8/float32.
    INTEGER: ClassVar[CodingMode]

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
CodingMode.INTEGER = CodingMode("int8", "float32")


def coding_argument(text: str) -> CodingMode:
    """``type=`` of a ``--coding`` option: the mode, or argparse's one-line error."""
    try:
        return CodingMode.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class StaleCoderError(RuntimeError):
    """A coder asked to code after the model's weights changed under its copies."""


class TransformCopies(nn.Module):
    """Copies of a model's analysis and synthesis transforms in another dtype, never trained (not submodules of
    the model), with the model's kernel policy for their inputs' layout."""

    def __init__(self, net: TCM, dtype: torch.dtype, names: Sequence[str] = TRANSFORM_NETS):
        super().__init__()
        self.dtype = dtype
        self.kernels = net.kernels
        # Ordinary tensors (not inference tensors, whatever mode the caller is in).
        with torch.inference_mode(False), torch.no_grad():
            for name in names:
                setattr(self, name, converted_copy(getattr(net, name), dtype))
        self.requires_grad_(False)
        self.eval()


class Coder:
    """Compress and decompress with ``net`` in ``mode`` (a :class:`CodingMode` or its text; see the module's text).

    ``entropy_model`` is the entropy model the mode runs (the model's own for
    float32), ``transforms`` the transforms' copies (None: the model's own
    float32 networks).  They are made once, here; when a weight they were made
    from changes (in place, by an optimizer step or ``load_state_dict``, or by
    a move to another device) the coder is :attr:`stale`, refuses to code, and
    :meth:`refresh` converts again.
    """

    def __init__(self, net: TCM, mode: CodingMode | str = CodingMode.PUBLISHED):
        self.net = net
        self.mode = CodingMode.parse(mode) if isinstance(mode, str) else mode
        self.entropy_model: ChannelEntropyModel = net.entropy_model
        self.transforms: TransformCopies | None = None
        self._copied_from: tuple = ()
        self.refresh()

    def __repr__(self) -> str:
        return f"Coder({type(self.net).__name__}, {self.mode})"

    # ------------------------------------------------------------------ the copies
    def _sources(self) -> list[nn.Module]:
        """The model's parts that the copies were made from."""
        sources: list[nn.Module] = []
        if self.entropy_model is not self.net.entropy_model:
            sources.append(self.net.entropy_model)
        if self.transforms is not None:
            sources += [getattr(self.net, name) for name in TRANSFORM_NETS]
        return sources

    def _weights_state(self) -> tuple:
        """What identifies the tensors the copies come from: each one's storage, in-place version and device."""
        tensors = [t for m in self._sources() for t in (*m.parameters(), *m.buffers())]
        return tuple((t.data_ptr(), t._version, t.device) for t in tensors)

    def refresh(self) -> None:
        """Convert what the mode runs in another arithmetic from the model's current weights."""
        if self.mode.entropy == "int8":
            self.entropy_model = integer_entropy_model(self.net)
        else:
            self.entropy_model = self.net.entropy_model.converted(self.mode.entropy)
        self.transforms = None
        if self.mode.transforms != "float32":
            self.transforms = TransformCopies(self.net, self.mode.transforms_dtype)
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
        if self.transforms is None:
            return self.net.analyse(x)
        t = self.transforms
        y = t.g_a(t.kernels.layout(x).to(t.dtype))
        return y.float(), t.h_a(y).float()

    def synthesize(self, y_hat: Tensor) -> Tensor:
        """g_s(y_hat) in float32, computed in the mode's transforms, clamped to [0, 1]."""
        self._check_fresh()
        if self.transforms is None:
            return self.net.synthesize(y_hat)
        t = self.transforms
        x_hat = t.g_s(t.kernels.layout(y_hat.float()).to(t.dtype))
        return x_hat.float().clamp_(0, 1).contiguous()

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """``TCM.compress`` in this mode (the same keys; the published mode computes exactly it)."""
        self.net.check_image(x)
        y, z = self.analyse(x)
        return self.net.encode_latents(y, z, self.entropy_model)

    @torch.no_grad()
    def decompress(self, strings: list, shape) -> dict:
        """``TCM.decompress`` in this mode: the entropy arithmetic must be the encoder's, the transforms need not."""
        out = self.decode_latents(strings, shape)
        return {"x_hat": self.synthesize(out["y_hat"]), "symbols": out["symbols"]}

    @torch.no_grad()
    def decode_latents(self, strings: list, shape, keep_parameters: bool = False) -> dict:
        """``TCM.decode_latents`` in this mode's entropy arithmetic: ``{"y_hat", "symbols"}`` before the
        synthesis; ``strings`` may hold stream readers (``models.entropy_model.SymbolReader``)."""
        self._check_fresh()
        return self.net.decode_latents(strings, shape, self.entropy_model, keep_parameters)
