"""TCM models, their configuration, presets and checkpoint loading.

The names below load from their modules on first use, so that a command
line that needs only the configuration (``models.config``) does not import
the model, torch or CompressAI.
"""

from typing import TYPE_CHECKING

from utils.light_imports import lazy_exports, light_imports
from utils.padding import PAD_MULTIPLE

light_imports()  # before the first import of CompressAI or timm

if TYPE_CHECKING:
    from .checkpoint import (
        CheckpointError,
        checkpoint_stem,
        display_name,
        extract_state_dict,
        load_model,
        model_from_state_dict,
        read_checkpoint,
        release_stem,
    )
    from .coding import Coder, CodingMode
    from .config import TCMConfig
    from .tcm import TCM

#: Named presets of the paper: N for Small, Middle and Large.
PRESETS = {"small": 64, "middle": 96, "large": 128}


def preset_name(name: str) -> str:
    """The preset a user means: "small", "middle", "large" or their initials, any case."""
    key = name.strip().lower()
    key = {k[0]: k for k in PRESETS}.get(key, key)
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)} (or s, m, l)")
    return key


def tcm(preset: str = "large", **kwargs) -> "TCM":
    """TCM by preset name ("small", "middle", "large" or "s", "m", "l")."""
    from .tcm import TCM

    return TCM(N=PRESETS[preset_name(preset)], **kwargs)


def tcm_small(**kwargs) -> "TCM":
    return tcm("small", **kwargs)


def tcm_middle(**kwargs) -> "TCM":
    return tcm("middle", **kwargs)


def tcm_large(**kwargs) -> "TCM":
    return tcm("large", **kwargs)


__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(("CheckpointError", "checkpoint_stem", "display_name", "extract_state_dict", "load_model",
                     "model_from_state_dict", "read_checkpoint", "release_stem"), "checkpoint"),
    "Coder": "coding", "CodingMode": "coding", "TCMConfig": "config", "TCM": "tcm",
}, keep=("tcm",))  # models.tcm is the preset function, as it always was; the module is models/tcm.py

__all__ = [
    "PAD_MULTIPLE", "PRESETS", "TCM", "TCMConfig", "CheckpointError", "Coder", "CodingMode", "checkpoint_stem",
    "display_name", "extract_state_dict", "load_model", "model_from_state_dict", "preset_name", "read_checkpoint",
    "release_stem", "tcm", "tcm_large", "tcm_middle", "tcm_small",
]
