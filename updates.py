"""Turn a training checkpoint into a release checkpoint.

    python updates.py CHECKPOINT [-o OUT_DIR] [-n NAME] [--half]

Loads anything ``models.load_model`` accepts, builds the entropy tables,
drops the optimizer state and writes ``OUT_DIR/NAME-<sha256[:8]>.pth.tar``
(CompressAI's release naming) holding the state_dict alone.  The written
file is then reloaded and a synthetic image is round-tripped through
compress and decompress before success is reported; each step is a line on
stdout as it starts (a failure is still one line on stderr).  The library code is ``models/release.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from utils.cli import ArgumentParser, ToolError, UsageError, run_tool

PROG = "updates.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="training or release checkpoint")
    p.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="where to write (default: .)")
    p.add_argument("-n", "--name", default=None,
                   help="file name stem, without folders (default: the checkpoint's name, less any hash; "
                        "a train.py checkpoint: its run folder's)")
    p.add_argument("--half", action="store_true",
                   help="store the transforms in float16 (loaded back as float32): about half the size")
    return p.parse_args(argv)


class Steps:
    """One line on stdout as each step starts, with the seconds since the first: a long step is not silence."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, what: str) -> None:
        print(f"[{time.perf_counter() - self.start:5.1f} s] {what}", flush=True)


def release(args: argparse.Namespace) -> int:
    def check_name(name: str) -> None:
        if not name or name != Path(name).name or name in (".", ".."):
            raise UsageError(f"-n {name!r}: a file name without folders (the folder is -o)")

    if args.name is not None:
        check_name(args.name)
    step = Steps()
    step(f"reading {args.checkpoint}")
    from models import load_model, model_from_state_dict, read_checkpoint
    from models.checkpoint import checkpoint_stem, display_name
    from models.release import round_trip_check, write_release

    name = args.name or display_name(args.checkpoint)
    check_name(name)

    model = model_from_state_dict(read_checkpoint(args.checkpoint)).eval()
    step(f"building the entropy tables of {checkpoint_stem(args.checkpoint)} (N={model.N})")
    model.update(force=True)
    step(f"writing the release file into {args.output_dir}" + (" (transforms in float16)" if args.half else ""))
    path = write_release(model, args.output_dir, name, args.half)
    step(f"reloading {path.name} and round-tripping a synthetic image")
    reloaded = load_model(path)
    try:
        err = round_trip_check(reloaded)
    except RuntimeError as e:
        path.unlink(missing_ok=True)
        raise ToolError(f"the release file does not decode correctly, not kept: {e}") from None
    n_params = sum(p.numel() for p in reloaded.parameters())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, N={reloaded.N}, {n_params:,} parameters); "
          f"reloaded and round-tripped a synthetic image (max error {err:.2g})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(PROG, lambda: release(args))


if __name__ == "__main__":
    sys.exit(main())
