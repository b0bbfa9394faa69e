"""TCM models, their configuration, presets and checkpoint loading."""

from utils.process import quiet_compressai_warnings

quiet_compressai_warnings()  # before the first import of CompressAI

from utils.padding import PAD_MULTIPLE  # noqa: E402

from .checkpoint import (  # noqa: E402
    CheckpointError,
    checkpoint_stem,
    display_name,
    extract_state_dict,
    load_model,
    model_from_state_dict,
    read_checkpoint,
    release_stem,
)
from .coding import Coder, CodingMode  # noqa: E402
from .config import TCMConfig  # noqa: E402
from .tcm import TCM  # noqa: E402

#: Named presets of the paper: N for Small, Middle and Large.
PRESETS = {"small": 64, "middle": 96, "large": 128}


def preset_name(name: str) -> str:
    """The preset a user means: "small", "middle", "large" or their initials, any case."""
    key = name.strip().lower()
    key = {k[0]: k for k in PRESETS}.get(key, key)
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)} (or s, m, l)")
    return key


def tcm(preset: str = "large", **kwargs) -> TCM:
    """TCM by preset name ("small", "middle", "large" or "s", "m", "l")."""
    return TCM(N=PRESETS[preset_name(preset)], **kwargs)


def tcm_small(**kwargs) -> TCM:
    return TCM(N=PRESETS["small"], **kwargs)


def tcm_middle(**kwargs) -> TCM:
    return TCM(N=PRESETS["middle"], **kwargs)


def tcm_large(**kwargs) -> TCM:
    return TCM(N=PRESETS["large"], **kwargs)


__all__ = [
    "PAD_MULTIPLE", "PRESETS", "TCM", "TCMConfig", "CheckpointError", "Coder", "CodingMode", "checkpoint_stem", "display_name", "extract_state_dict",
    "load_model", "model_from_state_dict", "preset_name", "read_checkpoint", "release_stem", "tcm", "tcm_large",
    "tcm_middle", "tcm_small",
]
