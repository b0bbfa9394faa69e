"""Loading TCM weights from any checkpoint layout, safely.

Every entry point (eval, codec, updates, train's fine-tuning) goes through
:func:`load_model`.  Accepted: a bare state_dict or a dict holding
``"state_dict"`` (training checkpoints), keys with or without DataParallel's
``module.`` prefix, 2023 entropy-bottleneck names (``_matrix0`` …, remapped by
CompressAI), float16 storage (restored to float32).  The architecture is read
off the weights.  Files are unpickled with ``weights_only=True``: a file that
needs code to load is refused and nothing in it runs.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch
from torch import Tensor


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one readable line."""


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load`` with ``weights_only=True`` and errors turned into CheckpointError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"refusing {path}: it is not a plain weights file (loading it would run code: {first})"
        ) from None
    except Exception as e:  # zip/pickle corruption, truncation, foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}".splitlines()[0]) from None


def extract_state_dict(obj: Any) -> dict[str, Tensor]:
    """The model weights inside a loaded checkpoint, with ``module.`` stripped."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError("checkpoint holds no state_dict of tensors")
    out = {}
    for k, v in obj.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if v.dtype in (torch.float16, torch.bfloat16):
            v = v.float()  # half-precision storage of float32 weights
        out[k] = v
    return out


def _count(sd: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def infer_config(sd: dict[str, Tensor]) -> dict[str, Any]:
    """Constructor arguments of TCM read off its weights."""
    try:
        N = sd["g_a.0.conv1.weight"].shape[0] // 2
        M = sd["h_a.0.conv1.weight"].shape[1]
        num_slices = _count(sd, r"cc_mean_transforms\.(\d+)\.")
        slice_ch = M // num_slices
        supports = [
            (sd[f"atten_mean.{i}.0.in_conv.weight"].shape[1] - M) // slice_ch for i in range(num_slices)
        ]
        most = max(supports)
        max_support = num_slices if most >= num_slices - 1 else most
        heads = []
        for stage in ("g_a", "g_s"):
            idx = sorted(int(m.group(1)) for k in sd
                         if (m := re.match(rf"{stage}\.(\d+)\.trans_block\.msa\.relative_position_params$", k)))
            heads += [sd[f"{stage}.{i}.trans_block.msa.relative_position_params"].shape[0] for i in idx]
        # stages of two blocks: one head_dim per stage
        if len(heads) != 12:
            raise CheckpointError(f"expected 12 TCM blocks in g_a/g_s, found {len(heads)}")
        head_dim = [N // heads[2 * s] for s in range(6)]
        return dict(
            N=N,
            M=M,
            num_slices=num_slices,
            max_support_slices=max_support,
            head_dim=head_dim,
            hyper_channels=sd["h_a.3.weight"].shape[0],
            atten_dim=sd["atten_mean.0.0.in_conv.weight"].shape[0],
            entropy_hidden=(
                sd["cc_mean_transforms.0.0.weight"].shape[0],
                sd["cc_mean_transforms.0.2.weight"].shape[0],
            ),
        )
    except KeyError as e:
        raise CheckpointError(f"not a TCM checkpoint: missing {e.args[0]}") from None
    except (IndexError, ZeroDivisionError, ValueError) as e:
        raise CheckpointError(f"not a TCM checkpoint: {e}") from None


def _short(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" … (+{len(keys) - n})" if len(keys) > n else "")


def model_from_state_dict(sd: dict[str, Tensor], cls=None):
    """Build a TCM from the weights and load them strictly."""
    if cls is None:
        from .tcm import TCM as cls
    sd = extract_state_dict(sd)
    model = cls(**infer_config(sd))
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        sizes = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        raise CheckpointError("checkpoint does not fit the model: " + (_short(sizes, 2) or str(e).splitlines()[0])) from None
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not fit the model: missing keys [{_short(list(missing))}]; "
            f"unexpected keys [{_short(list(unexpected))}]"
        )
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", update: bool = True):
    """Load any accepted checkpoint file as an eval-mode TCM on ``device``.

    With ``update`` the entropy tables are built if the checkpoint lacks them
    (training checkpoints), so the model can entropy-code straight away.
    """
    model = model_from_state_dict(extract_state_dict(read_checkpoint(path)))
    if update:
        model.update(force=False)
    return model.to(device).eval()
