"""The weights inside a loaded checkpoint object, whatever layout saved them.

The model's own entries keep the published names: ``TCM`` holds its entropy
model as one submodule (``entropy_model``), whose entries are saved without
that prefix (``atten_mean.0.0.…``, ``cc_mean_transforms.…``) and found again
on loading (:func:`published_key`, :func:`save_published_names`,
:func:`load_published_names`).

Accepted: a bare state dict or a dict holding ``"state_dict"`` (training
checkpoints, the authors' included), keys with DataParallel's ``module.``
prefix, CompressAI's 2023 entropy-bottleneck names (``_matrix0`` …, which its
``load_state_dict`` remaps), and float16, bfloat16 or float8 storage of float32
weights.  Used by :meth:`models.TCM.from_state_dict` and by ``load_model``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn
from torch import Tensor

from .config import check_stored

#: DataParallel's and DistributedDataParallel's key prefix.
WRAPPER_PREFIX = "module."
#: TCM's submodule holding the entropy model, whose entries are saved without this prefix.
ENTROPY_MODEL = "entropy_model"


def published_key(name: str) -> str:
    """The published name of one of TCM's entries (parameter, buffer) given its name in the module tree."""
    return name.removeprefix(ENTROPY_MODEL + ".")


def save_published_names(module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    """State-dict hook of TCM: its entropy model's entries under their published names, in place and in order."""
    inner = prefix + ENTROPY_MODEL + "."
    entries = [(k, state_dict.pop(k)) for k in list(state_dict) if k.startswith(prefix)]
    for k, v in entries:
        state_dict[prefix + k[len(inner):] if k.startswith(inner) else k] = v


def module_keys(module: nn.Module, state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``state_dict`` with TCM's published entry names (under ``prefix``) turned into its module-tree names."""
    heads = set(getattr(module, ENTROPY_MODEL)._modules)
    out = {}
    for k, v in state_dict.items():
        rest = k[len(prefix):] if k.startswith(prefix) else None
        if rest is not None and rest.split(".", 1)[0] in heads:
            k = prefix + ENTROPY_MODEL + "." + rest
        out[k] = v
    return out


def load_published_names(module: nn.Module, state_dict: dict, prefix: str, *_: Any) -> None:
    """Load-state-dict pre-hook of TCM: published entry names found in its entropy model (in place)."""
    renamed = module_keys(module, state_dict, prefix)
    if list(renamed) != list(state_dict):
        state_dict.clear()
        state_dict.update(renamed)


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
