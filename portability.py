"""Cross-configuration decoding: files encoded in one configuration, decoded in others.

    python portability.py --checkpoint CK [CK ...] [--random s] [--data DIR] [--limit N]
    python portability.py --checkpoint CK [CK ...] --cost [--precision bf16]

For each model, the images are encoded in the default configuration with the
published float32 entropy path and with the portable (float64) one, and each
file is decoded in other processes under every configuration of
``evaluation.portability.CONFIGS`` (1 thread, oneDNN off, NCHW, all three, and
the same configuration in another process).  The table counts the files that
fail to decode (latent checksum mismatch).  ``--random s`` adds TCM-S with
random weights (seed 0).  ``--cost`` times instead what the portable path
costs (``evaluation.portability.coding_cost``).  Default data: Kodak from
../shared, or the built-in photographs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from utils import ROOT
from utils.cli import ArgumentParser, UsageError, run_tool
from utils.files import write_text_atomic

PROG = "portability.py"
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", nargs="*", default=[], help="models to check (e.g. pretrained/*.pth.tar)")
    p.add_argument("--random", nargs="*", default=[], metavar="PRESET", help="also random-weight presets (s, m, l)")
    p.add_argument("--data", default=None, help="image folder (default: Kodak, or the built-in photographs)")
    p.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="transforms of both sides")
    p.add_argument("--cost", action="store_true",
                   help="instead: time encoding and decoding with the float32 and the portable path (and, "
                        "with --precision bf16, bf16 transforms) interleaved per image, in this process")
    p.add_argument("--json", help="write the table here too")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    import torch

    from datasets import list_images
    from datasets.samples import export_photos
    from evaluation.portability import CONFIGS, mismatch_table
    from models import tcm

    if not args.checkpoint and not args.random:
        raise UsageError("give --checkpoint and/or --random")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.data:
            images = list_images(args.data)
        elif KODAK.is_dir():
            images = list_images(KODAK)
        else:
            images = export_photos(work / "photos")
        images = images[: args.limit] if args.limit else images
        models = {Path(c).name: str(c) for c in args.checkpoint}
        for preset in args.random:
            torch.manual_seed(0)
            net = tcm(preset)
            net.update(force=True)
            path = work / f"random-{preset}.pth"
            torch.save(net.state_dict(), path)
            models[f"TCM-{preset.upper()} random"] = str(path)
        if args.cost:
            return print_cost(args, models, images)
        results = {"images": len(images), "data": str(args.data or (KODAK if KODAK.is_dir() else "built-in")),
                   "precision": args.precision, "models": {}}
        for name, ck in models.items():
            start = time.monotonic()
            table = mismatch_table(ck, images, work / name.replace(" ", "-"), precision=args.precision)
            results["models"][name] = table
            print(f"  {name}: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    print(f"Files that fail to decode, of {len(images)} encoded in the default configuration "
          f"({args.precision} transforms):")
    width = max(len("model"), *map(len, results["models"]))
    print(f"{'model':{width}} {'path':9} " + " ".join(f"{c:>{max(len(c), 6)}}" for c in CONFIGS))
    for name, table in results["models"].items():
        for path, row in table.items():
            print(f"{name:{width}} {path:9} " + " ".join(f"{row[c]:>{max(len(c), 6)}}" for c in CONFIGS))
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return 0


def print_cost(args: argparse.Namespace, models: dict[str, str], images: list[Path]) -> int:
    from evaluation.portability import coding_cost
    from utils.process import keep_freed_memory

    keep_freed_memory()  # as codec.py runs
    variants = ["float32", "portable"] + (["float32-bf16", "portable-bf16"] if args.precision == "bf16" else [])
    results = {"images": len(images), "variants": variants, "models": {}}
    print(f"Seconds per image, mean of {len(images)}, variants interleaved per image "
          "(cost: against the float32 path with fp32 transforms):")
    print(f"{'model':38} {'variant':14} {'encode':>7} {'decode':>7} {'cost':>17}")
    for name, ck in models.items():
        cost = results["models"][name] = coding_cost(ck, images, variants)
        base = cost["float32"]
        for v, t in cost.items():
            rel = " / ".join(f"{100 * (t[w] / base[w] - 1):+6.1f}%" for w in ("encode", "decode"))
            print(f"{name[:38]:38} {v:14} {t['encode']:7.3f} {t['decode']:7.3f} {rel:>17}")
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
