"""Cross-configuration decoding: files encoded in one configuration, decoded in others.

    python portability.py --checkpoint CK [CK ...] [--random s] [--data DIR] [--limit N] [--coding MODE ...]
    python portability.py --checkpoint CK [CK ...] --cost [--coding MODE ...]

For each model, the images are encoded in the default configuration in each
``--coding`` mode (``models.coding``; default float32/float32, the published
function, and float64/float32, the file codec's entropy arithmetic), and each
file is decoded, with the mode's transforms, in other processes under every
configuration of ``evaluation.portability.CONFIGS`` (1 thread, oneDNN off,
NCHW, all three, and the same configuration in another process).  The table
counts the files that fail to decode (latent checksum mismatch).
``--random s`` adds TCM-S with random weights (seed 0; for int8 modes with
integer parameters calibrated once and stored with them, as a release file
carries its own: otherwise each configuration would calibrate its own).
``--cost`` times
instead what each mode costs against the first
(``evaluation.portability.coding_cost``).  Default data: the built-in
photographs (scikit-image's); ``--data DIR`` takes a folder (Kodak, say).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from models.mode_names import coding_mode
from utils.cli import ArgumentParser, UsageError, run_tool
from utils.files import save_torch_atomic, write_text_atomic

PROG = "portability.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", nargs="*", default=[], help="models to check (e.g. pretrained/*.pth.tar)")
    p.add_argument("--random", nargs="*", default=[], metavar="PRESET", help="also random-weight presets (s, m, l)")
    p.add_argument("--data", default=None, help="image folder (default: the built-in photographs)")
    p.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    p.add_argument("--coding", nargs="+", type=coding_mode, default=None, metavar="MODE",
                   help="coding modes, ENTROPY/TRANSFORMS: files are encoded in each and decoded with its "
                        "transforms (default: the published function and the file codec's entropy arithmetic, "
                        "evaluation.portability.DEFAULT_MODES)")
    p.add_argument("--cost", action="store_true",
                   help="instead: time encoding and decoding in each --coding mode, interleaved per image, in this "
                        "process, against the first mode")
    p.add_argument("--json", help="write the table here too")
    args = p.parse_args(argv)
    from evaluation.portability import DEFAULT_MODES

    args.coding = list(dict.fromkeys(args.coding or DEFAULT_MODES))  # each mode once, in the order given
    return args


def run(args: argparse.Namespace) -> int:
    import torch

    from datasets import list_images
    from datasets.samples import export_photos
    from evaluation.portability import CONFIGS, mismatch_table, random_checkpoint
    from models import tcm

    if not args.checkpoint and not args.random:
        raise UsageError("give --checkpoint and/or --random")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = list_images(args.data) if args.data else export_photos(work / "photos")
        images = images[: args.limit] if args.limit else images
        models = {Path(c).name: str(c) for c in args.checkpoint}
        for preset in args.random:
            torch.manual_seed(0)
            net = tcm(preset)
            net.update(force=True)
            path = work / f"random-{preset}.pth"
            save_torch_atomic(random_checkpoint(net, args.coding), path)
            models[f"TCM-{preset.upper()} random"] = str(path)
        if args.cost:
            return print_cost(args, models, images)
        results = {"images": len(images), "data": str(args.data or "built-in photographs"),
                   "coding": [str(m) for m in args.coding], "models": {}}
        for name, ck in models.items():
            start = time.monotonic()
            table = mismatch_table(ck, images, work / name.replace(" ", "-"), modes=args.coding)
            results["models"][name] = table
            print(f"  {name}: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    print(f"Files that fail to decode, of {len(images)} encoded in the default configuration:")
    width = max(len("model"), *map(len, results["models"]))
    print(f"{'model':{width}} {'coding':16} " + " ".join(f"{c:>{max(len(c), 6)}}" for c in CONFIGS))
    for name, table in results["models"].items():
        for mode, row in table.items():
            print(f"{name:{width}} {mode:16} " + " ".join(f"{row[c]:>{max(len(c), 6)}}" for c in CONFIGS))
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return 0


def print_cost(args: argparse.Namespace, models: dict[str, str], images: list[Path]) -> int:
    from evaluation.portability import coding_cost
    from utils.process import busy_note, keep_freed_memory, load_average

    keep_freed_memory()  # as codec.py runs
    load = load_average()
    results = {"images": len(images), "coding": [str(m) for m in args.coding], "models": {}}
    print(f"Seconds per image, mean of {len(images)} ({args.data or 'the built-in photographs'}), "
          "modes interleaved per image "
          f"(cost: against {args.coding[0]}):")
    print(f"{'model':38} {'coding':16} {'encode':>7} {'decode':>7} {'cost':>17}")
    for name, ck in models.items():
        cost = results["models"][name] = coding_cost(ck, images, args.coding)
        base = cost[str(args.coding[0])]
        for mode, t in cost.items():
            rel = " / ".join(f"{100 * (t[w] / base[w] - 1):+6.1f}%" for w in ("encode", "decode"))
            print(f"{name[:38]:38} {mode:16} {t['encode']:7.3f} {t['decode']:7.3f} {rel:>17}")
    note = busy_note(max(v for v in (load, load_average()) if v is not None)) if load is not None else busy_note()
    if note:
        print(f"note: {note}: times are longer than on an idle machine (the modes are interleaved, so their "
              "costs stay comparable)")
    results["busy"] = note
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
