"""TCM models and checkpoint loading."""

import warnings

# CompressAI scripts a helper with torch.jit at import time, which current torch
# flags as deprecated on every start of every tool; nothing here can act on it.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from .checkpoint import CheckpointError, infer_config, load_model, model_from_state_dict, read_checkpoint
from .tcm import PAD_MULTIPLE, TCM

#: Named presets of the paper: N for Small, Middle and Large.
PRESETS = {"small": 64, "middle": 96, "large": 128}


def tcm(preset: str = "large", **kwargs) -> TCM:
    """TCM by preset name ("small", "middle", "large" or "s", "m", "l")."""
    names = {k[0]: k for k in PRESETS}
    name = names.get(preset.lower(), preset.lower())
    if name not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return TCM(N=PRESETS[name], **kwargs)


def tcm_small(**kwargs) -> TCM:
    return TCM(N=64, **kwargs)


def tcm_middle(**kwargs) -> TCM:
    return TCM(N=96, **kwargs)


def tcm_large(**kwargs) -> TCM:
    return TCM(N=128, **kwargs)


__all__ = [
    "PAD_MULTIPLE", "PRESETS", "TCM", "CheckpointError", "infer_config", "load_model",
    "model_from_state_dict", "read_checkpoint", "tcm", "tcm_large", "tcm_middle", "tcm_small",
]
