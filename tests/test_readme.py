"""The README's quick start: what its commands write into the repository root stays out of ``git status``."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import ROOT

#: What the quick start's commands write, relative to the repository root (README.md, "Quick start").
QUICK_START_OUTPUTS = (
    "demo_out/photos/coffee.png", "coffee.tcm", "coffee-decoded.png", "coded/astronaut.tcm",
    "results.json", "results-jpeg.json", "results-webp.json", "results.json.partial.jsonl", "rd.png",
    "report/index.html", "kodak.json", "kodak.json.partial.jsonl", "runs/quick/mse_lambda_0.013/metrics.jsonl",
    "releases/tcm-quick-0123abcd.pth.tar",
)


def test_the_quick_start_outputs_are_ignored():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *QUICK_START_OUTPUTS],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    not_ignored = [line.split("\t")[-1] for line in proc.stdout.splitlines() if line.startswith("::")]
    assert proc.returncode in (0, 1) and not_ignored == [], not_ignored
