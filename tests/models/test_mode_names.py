"""The coding modes' names spelt without torch (models/mode_names.py) are CodingMode's."""

from __future__ import annotations

import argparse

import pytest

from models import mode_names
from models.coding import CodingMode


def test_the_names_are_coding_modes():
    assert mode_names.ENTROPIES == CodingMode.ENTROPIES
    assert mode_names.TRANSFORMS == CodingMode.TRANSFORMS
    assert list(mode_names.ALL) == [str(m) for m in CodingMode.all()]
    assert (mode_names.PUBLISHED, mode_names.PORTABLE) == (str(CodingMode.PUBLISHED), str(CodingMode.PORTABLE))


def test_an_option_value_becomes_the_mode_or_argparses_error():
    assert mode_names.coding_mode("float64/bfloat16") == CodingMode("float64", "bfloat16")
    with pytest.raises(argparse.ArgumentTypeError, match="coding mode 'fp32': choose from float32/float32"):
        mode_names.coding_mode("fp32")
