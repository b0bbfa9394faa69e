"""What every tool does alike: --help without loading torch, --cuda without a GPU as a usage error."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT

TOOLS = ("eval.py", "train.py", "bench.py", "codec.py", "updates.py", "demo.py", "portability.py")
CUDA_TOOLS = {
    "train.py": ["-d", "data", "--lambda", "0.013"],
    "eval.py": ["--checkpoint", "pretrained", "--data", "data"],
    "bench.py": ["--model", "s", "--quick"],
}
HEAVY = ("torch", "numpy", "compressai.entropy_models", "timm.layers", "matplotlib", "scipy.stats")


@pytest.mark.parametrize("tool", TOOLS)
def test_help_loads_no_heavy_library(tool):
    """--help answers from the parser alone: torch, NumPy, CompressAI, timm, matplotlib, SciPy stay unloaded."""
    probe = (f"import runpy, sys\nsys.argv = [{tool!r}, '--help']\n"
             f"try:\n    runpy.run_path({tool!r}, run_name='__main__')\nexcept SystemExit as e:\n    assert e.code == 0, e\n"
             "loaded = [m for m in " + repr(HEAVY) + " if m in sys.modules and type(sys.modules[m]).__name__ == 'module']\n"
             "print('LOADED', loaded)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and proc.stdout.strip().splitlines()[-1] == "LOADED []", proc.stdout[-300:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("tool", sorted(CUDA_TOOLS))
def test_cuda_without_a_device_is_a_one_line_usage_error(tool, tmp_path):
    """The authors' commands carry --cuda: on a CPU machine, exit status 2 and one line, before any work."""
    proc = subprocess.run([sys.executable, str(ROOT / tool), *CUDA_TOOLS[tool], "--cuda"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"{tool}: error: --cuda: no CUDA device is available here (leave out --cuda to run on the CPU) (see --help)"]
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []
