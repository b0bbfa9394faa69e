"""Libraries imported by the parts used (utils/light_imports.py): deferred packages, and every project import
of CompressAI and timm going through them."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT
from utils.light_imports import DeferredModule, defer


def run_python(code: str, cwd: Path = ROOT) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def log(tmp_path, monkeypatch):
    """A package whose __init__ records that it ran and re-exports from two submodules, one heavy."""
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import sys\nsys.toy_log.append('init')\n"
        "from .light import answer\nfrom .heavy import weight as heavy_weight\nfrom toy import sub\n"
        "def helper():\n    return 'helper'\n")
    (pkg / "light.py").write_text("import sys\nsys.toy_log.append('light')\nanswer = 42\n")
    (pkg / "heavy.py").write_text("import sys\nsys.toy_log.append('heavy')\nweight = 1000\n")
    (pkg / "sub" / "__init__.py").write_text("import sys\nsys.toy_log.append('sub')\nvalue = 'sub'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "toy_log", [], raising=False)
    yield sys.toy_log
    for name in [m for m in sys.modules if m == "toy" or m.startswith("toy.")]:
        del sys.modules[name]


def test_a_deferred_package_runs_only_what_is_used(log):
    module = defer("toy")
    assert isinstance(module, DeferredModule) and sys.modules["toy"] is module and log == []
    import toy.light  # noqa: F401  a submodule imports without the package's own code

    assert log == ["light"]
    from toy import answer  # a name the package takes from one submodule comes from that one alone

    assert answer == 42 and log == ["light"]
    assert module.helper() == "helper"  # any other name runs the package's code, in place
    assert log == ["light", "init", "heavy"] and type(module).__name__ == "module"
    assert module.sub.value == "sub" and log[-1] == "sub"  # the subpackage it names was deferred in turn
    assert module.heavy_weight == 1000 and log.count("init") == 1


def test_an_imported_or_missing_package_is_left_alone(log):
    import toy

    assert defer("toy") is toy and not isinstance(toy, DeferredModule) and log[0] == "init"
    assert defer("no_such_package_anywhere") is None


def test_the_tools_load_no_part_of_the_libraries_they_do_not_use():
    """Loading a model and coding with it (the published function, a file in codec.py's default mode and in int8)
    imports neither CompressAI's datasets (torch_geometric, torch._dynamo), nor its registry (torchvision), nor
    timm's models, nor SciPy's statistics, nor plotting or pandas."""
    (demo,) = (ROOT / "pretrained").glob("tcm-demo-mse-0.013-*.pth.tar")
    out = run_python(f"""
        import sys, torch
        from PIL import Image
        from models import load_model
        from file_codec import Codec
        net = load_model({str(demo)!r})
        with torch.no_grad():
            net.compress(torch.rand(1, 3, 128, 128))
        for mode in ('float64/float32', 'int8/float32'):
            Codec.load({str(demo)!r}, mode).encode(Image.new('RGB', (96, 80), (120, 90, 60)))
        real = lambda m: m in sys.modules and type(sys.modules[m]).__name__ == 'module'
        print([m for m in ('compressai.datasets', 'compressai.zoo', 'compressai.registry', 'torch_geometric',
                           'torchvision', 'timm.models', 'scipy.stats', 'torch._dynamo', 'matplotlib', 'pandas')
               if real(m)])
    """)
    assert out.strip() == "[]"


def test_everything_of_a_deferred_library_is_still_there():
    out = run_python("""
        import models, compressai, scipy.stats, timm
        print(compressai.get_entropy_coder(), compressai.__version__, scipy.stats.norm.ppf(0.5))
        from compressai.latent_codecs import LatentCodec
        from compressai.utils.plot.__main__ import parse_json_file
        from timm.layers import DropPath
        print(LatentCodec.__name__, parse_json_file.__name__, DropPath.__name__)
    """)
    assert out.split() == ["ans", "1.2.8", "0.0", "LatentCodec", "parse_json_file", "DropPath"]


LIBRARIES = ("compressai", "timm")


def _imports_library(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n.split(".")[0] in LIBRARIES for n in names):
            return True
    return False


def _calls_light_imports(path: Path) -> bool:
    return path.is_file() and "light_imports()" in path.read_text()


def test_every_project_import_of_compressai_or_timm_comes_after_light_imports():
    """A module that imports CompressAI or timm is in a package whose __init__ calls light_imports() (the tests:
    tests/conftest.py), or calls it itself; utils/light_imports.py is the one place that knows the packages."""
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".venv", ".git") or not _imports_library(path):
            continue
        guards = [path, ROOT / rel.parts[0] / "__init__.py"] + ([ROOT / "tests" / "conftest.py"]
                                                               if rel.parts[0] == "tests" else [])
        if not any(_calls_light_imports(g) for g in guards):
            offenders.append(str(rel))
    assert offenders == []
    assert _imports_library(ROOT / "models" / "tcm.py")  # the scan sees the imports it is about
