"""What produced a result: the project's commit, library versions, the device and its threads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ROOT

if TYPE_CHECKING:
    import torch


def project_commit() -> str | None:
    """The checkout's commit (``+dirty`` with uncommitted changes), or None outside a git checkout."""
    import subprocess

    try:
        run = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=10, check=True).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def device_name(device: torch.device | str = "cpu") -> str:
    """The card's or the processor's name, as a figure's reader needs it."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What produced a result: project commit, library versions, device and threads."""
    import platform

    import torch

    from .light_imports import light_imports

    light_imports()
    import compressai

    return {
        "commit": project_commit(),
        "torch": str(torch.__version__),
        "compressai": str(compressai.__version__),
        "python": platform.python_version(),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
    }
