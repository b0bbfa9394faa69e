"""Shared fixtures-as-functions for the tests: tiny models and data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from models import TCM

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
KODAK = SHARED / "data" / "kodak"
BSDS = SHARED / "data" / "bsds500"
REFERENCE = SHARED / "reference"


def require(path: Path) -> Path:
    """Skip the calling test, with a reason, where ../shared is absent (a user's clone)."""
    if not path.exists():
        pytest.skip(f"{path} not found: this test reads the workplace's ../shared data")
    return path


def tiny_tcm(seed: int = 0, **overrides) -> TCM:
    """A TCM small enough for fast tests, with the full structure of the published one."""
    torch.manual_seed(seed)
    kwargs = dict(N=32, M=80, num_slices=5, hyper_channels=32, atten_dim=32, entropy_hidden=(32, 32))
    kwargs.update(overrides)
    return TCM(**kwargs)
