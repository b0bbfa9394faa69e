"""The import graph has no cycle between modules or between top-level packages (tools/import_graph.py)."""

from __future__ import annotations

import importlib.util

from tests.helpers import ROOT


def load_tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_cycles_between_modules_or_packages():
    tool = load_tool()
    modules = tool.graph()
    assert "models.tcm" in modules and "layers" in modules["models.tcm"]  # function-level imports count too
    assert tool.cycles(modules) == []
    assert tool.cycles(tool.package_graph(modules)) == []


def test_a_cycle_is_found(tmp_path):
    """The check can fail: two packages that import each other, one of them inside a function."""
    tool = load_tool()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "__init__.py").write_text("from b import y\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "__init__.py").write_text("def f():\n    from a import x\n")
    (tmp_path / "c.py").write_text("import a\n")
    modules = tool.graph(tmp_path)
    assert modules == {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert tool.cycles(tool.package_graph(modules)) == [["a", "b"]]
