"""The codec's option values, named without torch (file_codec/settings.py)."""

from __future__ import annotations

from file_codec import settings
from models.coding import CodingMode


def test_the_transforms_are_the_coding_modes():
    assert settings.TRANSFORMS == CodingMode.TRANSFORMS == ("float32", "bfloat16")


def test_the_default_transforms_are_bfloat16_where_the_cpu_has_it(monkeypatch):
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(settings, "native_bfloat16", lambda native=native: native)
        assert settings.default_transforms() == expected
