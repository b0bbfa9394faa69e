"""The weights inside a loaded checkpoint object, whatever layout saved them.

Accepted: a bare state dict or a dict holding ``"state_dict"`` (training
checkpoints, the authors' included), keys with DataParallel's ``module.``
prefix, CompressAI's 2023 entropy-bottleneck names (``_matrix0`` …, which its
``load_state_dict`` remaps), and float16, bfloat16 or float8 storage of float32
weights.  Used by :meth:`models.TCM.from_state_dict` and by ``load_model``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from .config import check_stored

#: DataParallel's and DistributedDataParallel's key prefix.
WRAPPER_PREFIX = "module."


def describe_keys(keys: list[str], n: int = 4) -> str:
    """``a, b, c, d … (+12)``: enough of a key list to recognise it."""
    return ", ".join(keys[:n]) + (f" … (+{len(keys) - n})" if len(keys) > n else "")


def weights_of(obj: Any) -> dict[str, Tensor]:
    """The model weights in ``obj``: bare keys, float32 floats; ValueError for anything else."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        found = "an empty dict" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise ValueError(f"no state_dict of tensors (found {found})")
    if not all(isinstance(v, Tensor) for v in obj.values()):
        others = sorted(str(k) for k, v in obj.items() if not isinstance(v, Tensor))
        raise ValueError(f"no state_dict of tensors (found {describe_keys(others)} holding other things)")
    check_stored(obj)  # before the float32 copies below allocate what an entry only claims
    out = {}
    for k, v in obj.items():
        k = k[len(WRAPPER_PREFIX):] if k.startswith(WRAPPER_PREFIX) else k
        if v.is_floating_point() and v.dtype != torch.float32:
            v = v.float()  # narrower storage (float16, bfloat16, float8) of float32 weights
        out[k] = v
    return out
