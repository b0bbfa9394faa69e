"""Turn a training checkpoint into a release checkpoint.

    python updates.py CHECKPOINT [-o OUT_DIR] [-n NAME] [--half] [--calibration DIR]

Loads anything ``models.load_model`` accepts (the authors' published
checkpoints too), builds the entropy tables, calibrates the integer entropy
model's parameters (``models.integer_entropy``) on a handful of training
images (``--calibration``; default: the built-in sample photographs), drops
the optimizer state and writes ``OUT_DIR/NAME-<sha256[:8]>.pth.tar``
(CompressAI's release naming) holding the state_dict and those parameters.
The written file is then reloaded and a synthetic image is round-tripped
through compress and decompress, in the published arithmetic and in exact
integers, before success is reported.  The library code is
``models/release.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models import display_name, load_model, model_from_state_dict, read_checkpoint
from models.integer_entropy import (CALIBRATION_SIDE, IntegerEntropyModel, calibration_crops, calibration_latents,
                                    sample_images)
from models.release import round_trip_check, write_release
from utils.cli import ArgumentParser, ToolError, UsageError, run_tool

PROG = "updates.py"
#: Images of a --calibration folder the integer entropy model is calibrated on.
CALIBRATION_IMAGES = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="training or release checkpoint")
    p.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="where to write (default: .)")
    p.add_argument("-n", "--name", default=None,
                   help="file name stem, without folders (default: the checkpoint's name, less any hash; "
                        "a train.py checkpoint: its run folder's)")
    p.add_argument("--half", action="store_true",
                   help="store the transforms in float16 (loaded back as float32): about half the size")
    p.add_argument("--calibration", type=Path, metavar="DIR",
                   help=f"training images the integer entropy model is calibrated on (the first "
                        f"{CALIBRATION_IMAGES} by name, top-left crops of at most {CALIBRATION_SIDE} pixels; never an "
                        "evaluation set; default: the built-in sample photographs)")
    return p.parse_args(argv)


def calibration_set(folder: Path | None) -> tuple[list, str]:
    """(calibration crops, what they are) from ``folder``, or the built-in sample photographs."""
    if folder is None:
        return sample_images(), "the built-in sample photographs"
    from datasets import list_images, open_rgb, to_tensor

    if not folder.is_dir():
        raise UsageError(f"--calibration {folder}: not a folder of images")
    files = list_images(folder)[:CALIBRATION_IMAGES]
    if not files:
        raise UsageError(f"--calibration {folder}: no images there")
    return calibration_crops([to_tensor(open_rgb(f, warn_alpha=False)) for f in files]), f"{len(files)} images of {folder}"


def release(args: argparse.Namespace) -> int:
    name = args.name or display_name(args.checkpoint)
    if not name or name != Path(name).name or name in (".", ".."):
        raise UsageError(f"-n {name!r}: a file name without folders (the folder is -o)")
    model = model_from_state_dict(read_checkpoint(args.checkpoint)).eval()
    model.update(force=True)
    images, source = calibration_set(args.calibration)
    print(f"calibrating the integer entropy model on {source}", flush=True)
    integer = IntegerEntropyModel.calibrated(model.entropy_model, calibration_latents(model, images))
    path = write_release(model, args.output_dir, name, args.half, integer.integer_parameters.values)
    reloaded = load_model(path)
    try:
        err = max(round_trip_check(reloaded), round_trip_check(reloaded, "int8/float32"))
    except RuntimeError as e:
        path.unlink(missing_ok=True)
        raise ToolError(f"the release file does not decode correctly, not kept: {e}") from None
    n_params = sum(p.numel() for p in reloaded.parameters())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, N={reloaded.N}, {n_params:,} parameters, integer "
          f"entropy parameters from {source}); reloaded and round-tripped a synthetic image in float32 and int8 "
          f"(max error {err:.2g})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(PROG, lambda: release(args))


if __name__ == "__main__":
    sys.exit(main())
