"""tools/synthetic_png.py: large test images written a row at a time, for the codec's memory figures."""

from __future__ import annotations

import importlib.util

import numpy as np
from PIL import Image

from tests.helpers import ROOT


def load_tool():
    spec = importlib.util.spec_from_file_location("synthetic_png", ROOT / "tools" / "synthetic_png.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_png_holds_the_rows_and_is_small(tmp_path, monkeypatch):
    """Pillow reads back every row the tool made; several IDAT chunks join up; smooth content packs tightly."""
    tool = load_tool()
    monkeypatch.setattr(tool, "CHUNK", 4096)  # several IDAT chunks even for a small image
    assert tool.main(["700", "300", str(tmp_path / "s.png")]) == 0
    expected = np.stack(list(tool.smooth_rows(700, 300)))
    with Image.open(tmp_path / "s.png") as img:
        assert img.mode == "RGB" and img.size == (700, 300)
        assert np.array_equal(np.asarray(img), expected)
    assert (tmp_path / "s.png").stat().st_size < expected.nbytes / 5
    assert len(expected) == 300 and len(np.unique(expected[..., 1])) > 100  # not a flat image
