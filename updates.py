"""Turn a training checkpoint into a release checkpoint.

    python updates.py CHECKPOINT [-o OUT_DIR] [-n NAME] [--half]

Loads anything ``models.load_model`` accepts, builds the entropy tables,
drops the optimizer state and writes ``OUT_DIR/NAME-<sha256[:8]>.pth.tar``
(CompressAI's release naming) holding the state_dict alone.  The written
file is then reloaded and a synthetic image is round-tripped through
compress and decompress before success is reported.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import torch

from models import CheckpointError, TCM, load_model, model_from_state_dict, read_checkpoint
from utils import atomic_write, pad

ENTROPY_PREFIXES = ("entropy_bottleneck.", "gaussian_conditional.")
GAUSSIAN_TABLES = tuple(f"gaussian_conditional.{b}" for b in ("_quantized_cdf", "_offset", "_cdf_length"))


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
        # The Gaussian coding tables are a function of the fixed scale table alone
        # (~0.8 MB): stored empty, as before update(), and rebuilt by load_model.
        for k in GAUSSIAN_TABLES:
            sd[k] = sd[k].new_empty(0)
    return sd


def synthetic_image(h: int = 160, w: int = 224) -> torch.Tensor:
    """A smooth colour ramp with a few edges: deterministic, no data needed."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([xx, yy, (xx * 6).floor().remainder(2) * 0.5 + 0.25 * yy])
    return img.clamp(0, 1).unsqueeze(0)


def round_trip_check(model: TCM) -> float:
    """Compress and decompress a synthetic image; return the max error vs the forward pass.

    Raises RuntimeError if the decoded image has the wrong size or drifts.
    """
    x = synthetic_image()
    xp, _ = pad(x, 128)
    with torch.no_grad():
        ref = model(xp)["x_hat"].clamp(0, 1)
        enc = model.compress(xp)
        dec = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    if dec.shape != xp.shape:
        raise RuntimeError(f"decoded shape {tuple(dec.shape)} != {tuple(xp.shape)}")
    err = (dec - ref).abs().max().item()
    if err > 1e-4:
        raise RuntimeError(f"decoded image differs from the forward pass by {err:.3g}")
    return err


def write_release(model: TCM, out_dir: Path, name: str, half: bool = False) -> Path:
    """Serialise in memory, name by the bytes' hash, write atomically."""
    buffer = io.BytesIO()
    torch.save(release_state_dict(model, half), buffer)
    data = buffer.getvalue()
    final = out_dir / f"{name}-{hashlib.sha256(data).hexdigest()[:8]}.pth.tar"
    with atomic_write(final) as tmp:
        Path(tmp).write_bytes(data)
    return final


def default_name(checkpoint: Path) -> str:
    name = checkpoint.name
    for suffix in (".pth.tar", ".pth", ".pt", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return checkpoint.stem


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="training or release checkpoint")
    p.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="where to write (default: .)")
    p.add_argument("-n", "--name", default=None, help="file name stem (default: the checkpoint's)")
    p.add_argument("--half", action="store_true",
                   help="store the transforms in float16 (loaded back as float32) and the Gaussian "
                        "coding tables empty (rebuilt on load): about half the size")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = model_from_state_dict(read_checkpoint(args.checkpoint)).eval()
        model.update(force=True)
        path = write_release(model, args.output_dir, args.name or default_name(args.checkpoint), args.half)
        reloaded = load_model(path)
        err = round_trip_check(reloaded)
    except (CheckpointError, RuntimeError, OSError) as e:
        print(f"updates.py: error: {e}", file=sys.stderr)
        return 1
    n_params = sum(p.numel() for p in reloaded.parameters())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, N={reloaded.N}, {n_params:,} parameters); "
          f"reloaded and round-tripped a synthetic image (max error {err:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
