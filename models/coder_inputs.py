"""What may reach CompressAI's rANS coder: its tables and its symbols, checked first.

The C++ coder trusts its arguments (its own asserts are compiled out): a
table index past the tables reads and writes out of bounds (a segfault: a
release file stores no Gaussian tables until ``update()`` installs them), and
a symbol near the int32 limits, which is what NaN, infinite or huge latents
become, makes its escape coding shift by 32 bits and loop forever (a hang
that ignores SIGTERM, since the coder holds the interpreter).  Python code
must not be able to do either, so every coding path (``TCM.encode_latents``
and ``decode_latents`` with the entropy model's ``compress`` and
``decompress``, which ``TCM.compress``/``decompress``,
``models.coding.Coder`` and the file codec's decoder run) checks here and
raises :class:`CoderInputError` instead.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyModel
from torch import Tensor

from utils.cli import ToolError

#: CompressAI's CDFs are 16-bit: each ends at this.
CDF_TOTAL = 1 << 16
#: Largest |symbol| and |offset| sent to the coder.  Its escape coding writes a value
#: in 4-bit groups and loops forever on one of 2**28 or more; real latents stay in the hundreds.
MAX_SYMBOL = 1 << 24

_UPDATE_HINT = ("build them with model.update() (models.load_model does; a float16 release file "
                "stores the Gaussian tables empty)")


class CoderInputError(ToolError, ValueError):
    """Tables or values that would crash or hang the entropy coder; the message is one line."""


def checked_tables(module: EntropyModel, what: str) -> tuple[Tensor, Tensor, Tensor]:
    """(CDFs, CDF lengths, offsets) of ``module``, checked to be safe for the coder.

    Present (CompressAI's own checks), one length and one offset per CDF,
    lengths within the rows, offsets bounded, and every CDF a valid 16-bit
    one (0 first, rising strictly to 2**16 at its length).
    """
    try:
        module._check_cdf_size()
        module._check_cdf_length()
        module._check_offsets_size()
    except ValueError as e:
        raise CoderInputError(f"the {what} coding tables are unusable ({e}): {_UPDATE_HINT}") from None
    cdf = module._quantized_cdf.detach().cpu()
    lengths = module._cdf_length.detach().cpu().reshape(-1).long()
    offsets = module._offset.detach().cpu().reshape(-1).long()
    rows, width = cdf.shape
    if lengths.numel() != rows or offsets.numel() != rows:
        raise CoderInputError(f"the {what} coding tables disagree: {rows} CDFs, {lengths.numel()} lengths, "
                              f"{offsets.numel()} offsets")
    if int(lengths.min()) < 2 or int(lengths.max()) > width:
        raise CoderInputError(f"the {what} coding tables hold CDF lengths outside 2..{width}")
    if int(offsets.abs().max()) > MAX_SYMBOL:
        raise CoderInputError(f"the {what} coding tables hold offsets beyond ±{MAX_SYMBOL}")
    cdf = cdf.long()
    columns = torch.arange(width)
    rising = cdf[:, 1:] > cdf[:, :-1]
    inside = columns[None, 1:] < lengths[:, None]  # steps within each CDF's length
    ends = cdf.gather(1, (lengths - 1)[:, None]).squeeze(1)
    if bool((cdf[:, 0] != 0).any()) or bool((ends != CDF_TOTAL).any()) or bool((inside & ~rising).any()):
        raise CoderInputError(f"the {what} coding tables are not valid 16-bit CDFs (damaged tables): {_UPDATE_HINT}")
    return module._quantized_cdf, module._cdf_length, module._offset


def check_finite(x: Tensor, what: str) -> None:
    """Refuse NaN or infinite values before they become symbols."""
    if not bool(torch.isfinite(x).all()):
        raise CoderInputError(f"the weights or the input produce non-finite values (NaN or infinity) in {what}: "
                              "nothing can be entropy-coded (damaged or diverged weights?)")


def check_codable(values: Tensor, what: str) -> None:
    """Refuse values to be rounded into symbols that are non-finite or beyond :data:`MAX_SYMBOL`."""
    check_finite(values, what)
    if values.numel() and float(values.detach().abs().max()) > MAX_SYMBOL:
        raise CoderInputError(f"the weights or the input produce {what} beyond ±{MAX_SYMBOL}, more than the coder "
                              "can code (damaged or diverged weights?)")


def check_indexes(indexes: Tensor, tables: int, what: str) -> None:
    """Refuse table indexes outside the ``tables`` CDFs (the coder would read past them)."""
    if indexes.numel() and (int(indexes.min()) < 0 or int(indexes.max()) >= tables):
        raise CoderInputError(f"{what} index CDFs outside the {tables} coding tables (inconsistent tables)")
