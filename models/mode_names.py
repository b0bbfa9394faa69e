"""The coding modes' names, for command lines read before torch is loaded.

:class:`models.coding.CodingMode` is the definition (its one text form
``ENTROPY/TRANSFORMS``); these are its names spelt without importing it, and
tests/models/test_coding.py checks that the two agree.  :func:`coding_mode`
is the ``type=`` of a ``--coding`` option: it loads the model's side only when
such an option is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .coding import CodingMode

#: ``CodingMode.ENTROPIES`` and ``CodingMode.TRANSFORMS``.
ENTROPIES = ("float32", "float64", "int8")
TRANSFORMS = ("float32", "bfloat16")
#: ``str(CodingMode.PUBLISHED)`` and ``str(CodingMode.PORTABLE)``.
PUBLISHED, PORTABLE = "float32/float32", "float64/float32"
#: ``[str(m) for m in CodingMode.all()]``.
ALL = tuple(f"{entropy}/{transforms}" for entropy in ENTROPIES for transforms in TRANSFORMS)


def coding_mode(text: str) -> CodingMode:
    """``type=`` of a ``--coding`` option: the mode, or argparse's one-line error (``models.coding.coding_argument``)."""
    from .coding import coding_argument

    return coding_argument(text)


__all__ = ["ALL", "ENTROPIES", "PORTABLE", "PUBLISHED", "TRANSFORMS", "coding_mode"]
