"""Release files: a model's weights with its entropy tables, without training state, named by hash.

CompressAI's naming: ``<name>-<first 8 hex digits of the file's sha256>.pth.tar``;
``models.checkpoint`` checks the hash on load.  The file holds the state_dict
alone, or, when the integer entropy model's parameters come with it,
``{"state_dict": ..., "integer_entropy": ...}`` (``models.integer_entropy``):
the layout of a training checkpoint, which every loader of this project and
CompressAI's tools read.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from utils.files import write_bytes_atomic
from utils.padding import pad

from layers.integer import IntegerBoundError

from .coder_inputs import CoderInputError
from .coding_tables import canonical_gaussian_tables
from .integer_entropy import CHECKPOINT_KEY
from .tcm import TCM

ENTROPY_PREFIXES = ("entropy_bottleneck.", "gaussian_conditional.")
GAUSSIAN_TABLES = tuple(f"gaussian_conditional.{b}" for b in ("_quantized_cdf", "_offset", "_cdf_length"))


def is_canonical(model: TCM) -> bool:
    """Whether the model's Gaussian tables are the stored canonical ones."""
    gc, canonical = model.gaussian_conditional, canonical_gaussian_tables()
    return all(getattr(gc, k).shape == v.shape and torch.equal(getattr(gc, k).cpu(), v) for k, v in canonical.items())


def release_state_dict(model: TCM, half: bool = False) -> dict[str, torch.Tensor]:
    """The state_dict to publish; ``half`` stores the transforms' floats as float16.

    Entropy-model tensors stay float32 either way (they drive the coder).
    """
    sd = model.state_dict()
    if half:
        sd = {
            k: v.half() if v.is_floating_point() and not k.startswith(ENTROPY_PREFIXES) else v
            for k, v in sd.items()
        }
        # The Gaussian coding tables (~0.8 MB) of the paper's scale table are the stored
        # copy of models/coding_tables.py: left out, and installed by load_model's
        # update() on every machine alike.  Any other table is kept.
        if is_canonical(model):
            for k in GAUSSIAN_TABLES:
                sd[k] = sd[k].new_empty(0)
    return sd


def synthetic_image(h: int = 160, w: int = 224) -> torch.Tensor:
    """A smooth colour ramp with a few edges: deterministic, no data needed."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([xx, yy, (xx * 6).floor().remainder(2) * 0.5 + 0.25 * yy])
    return img.clamp(0, 1).unsqueeze(0)


def round_trip_check(model: TCM, mode: str = "float32/float32") -> float:
    """Compress and decompress a synthetic image in coding ``mode``; return the max error vs the encoder's reconstruction
    (the decoded latents must be the encoder's exactly).

    Raises RuntimeError if the image cannot be coded (non-finite latents,
    unusable tables or integer parameters: ``models.coder_inputs``), if the
    decoded image has the wrong size, or if it drifts or is not a number (NaN
    weights in g_s).
    """
    from .coding import Coder

    x = synthetic_image()
    xp, _ = pad(x)
    with torch.no_grad():
        try:
            coder = Coder(model, mode)
            enc = coder.compress(xp)
            dec = coder.decompress(enc["strings"], enc["shape"])
        except (CoderInputError, IntegerBoundError) as e:
            raise RuntimeError(str(e)) from None
        if not torch.equal(dec["symbols"]["y"], enc["symbols"]["y"]):
            raise RuntimeError(f"the {mode} decoder does not rebuild the encoder's latents")
        ref = model.synthesize(enc["y_hat"])
        dec = dec["x_hat"]
    if dec.shape != xp.shape:
        raise RuntimeError(f"decoded shape {tuple(dec.shape)} != {tuple(xp.shape)}")
    err = (dec - ref).abs().max().item()
    if not err <= 1e-4:  # NaN fails too
        raise RuntimeError(f"decoded image differs from the forward pass by {err:.3g}")
    return err


def write_release(model: TCM, out_dir: Path, name: str, half: bool = False,
                  integer_parameters: dict[str, torch.Tensor] | None = None) -> Path:
    """Serialise in memory, name by the bytes' hash, write atomically."""
    buffer = io.BytesIO()
    sd = release_state_dict(model, half)
    torch.save(sd if integer_parameters is None else {"state_dict": sd, CHECKPOINT_KEY: integer_parameters}, buffer)
    data = buffer.getvalue()
    final = out_dir / f"{name}-{hashlib.sha256(data).hexdigest()[:8]}.pth.tar"
    write_bytes_atomic(final, data)
    return final


