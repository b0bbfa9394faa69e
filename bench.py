"""How close TCM runs to this machine's arithmetic limit.

For TCM-S and TCM-L on one image: FLOPs (torch's flop counter, a multiply-add
counts 2), the matmul rate of the measurement's own arithmetic (float32, or
bfloat16 for bfloat16 transforms) measured in the same process just before
it (best of several: the yardstick), median times of forward / compress /
decompress / one training step after a warm-up run, the share of the
yardstick each reaches, and peak memory.  Every measurement runs in its own
subprocess so that peak RSS (``ru_maxrss``) belongs to that measurement
alone.  The table says which image was measured (random noise where no
``--image`` is given: its rANS coding costs more than a photograph's) and
whether the machine was busy (load average, or a yardstick far below the
run's best).  Weights are random (a ``--checkpoint`` may be given): speed
does not depend on them much, but the rANS coder's work does, a little.

    python bench.py --image kodim01.png   # TCM-S and TCM-L on a photograph
    python bench.py --model s --quick     # a smoke run: 256x256, batch 2, one repeat after one warm-up
    python bench.py --json bench.json     # also write the table
    python bench.py --model s --measures compress,decompress --coding float32/float32 float32/bfloat16 float64/bfloat16
    python bench.py --model s --measures compress,decompress --authors ../LIC_TCM   # against the authors' code
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.options import CLOCKS, MEASURES
from models.mode_names import ALL as CODING_MODES
from models.mode_names import coding_mode
from utils.cli import ArgumentParser, require_cuda, run_tool

PROG = "bench.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="s,l", help="comma-separated presets: s, m, l (default s,l)")
    p.add_argument("--image", help="image to code (default: random noise, 768x512)")
    p.add_argument("--checkpoint", help="weights to load instead of random ones")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    p.add_argument("--batch", type=int, default=8, help="training batch of 256x256 crops")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall time, or process CPU time (use with --threads 1 on a loaded machine)")
    p.add_argument("--quick", action="store_true", help="256x256 crop, batch 2, one repeat after one warm-up run")
    p.add_argument("--cuda", action="store_true", help="measure on the GPU")
    p.add_argument("--coding", nargs="+", type=coding_mode, default=None, metavar="MODE",
                   help="coding modes of compress/decompress, ENTROPY/TRANSFORMS (models.coding; default: all "
                        f"{' '.join(CODING_MODES)})")
    p.add_argument("--authors", metavar="CHECKOUT",
                   help="a clone of the authors' repository (jmliu206/LIC_TCM): compress and decompress are also "
                        "timed by their code with the same weights, and each mode is compared with it")
    p.add_argument("--compile", action="store_true", help="torch.compile g_a, h_a, g_s")
    p.add_argument("--measures", default=",".join(MEASURES),
                   help=f"comma-separated subset of {','.join(MEASURES)} (decompress needs compress)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--worker", choices=MEASURES, help=argparse.SUPPRESS)
    p.add_argument("--strings-file", help=argparse.SUPPRESS)
    p.add_argument("--run-authors", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    bad = [m for m in args.measures if m not in MEASURES]
    if bad or not args.measures:
        p.error(f"--measures: choose from {', '.join(MEASURES)}")
    if "decompress" in args.measures and "compress" not in args.measures:
        p.error("--measures: decompress needs compress (it decodes compress's strings)")
    if args.repeats < 1 or args.batch < 1 or args.warmup < 0:
        p.error("--repeats and --batch must be at least 1, --warmup at least 0")
    if args.threads < 0:
        p.error("--threads must be at least 0")
    if args.quick:
        args.repeats, args.warmup, args.batch = 1, max(args.warmup, 1), min(args.batch, 2)
    if args.cuda and args.clock == "cpu":
        p.error("--clock cpu does not time GPU work: use the wall clock with --cuda")
    if args.cuda:
        require_cuda(p)
    if args.image and not Path(args.image).is_file():
        p.error(f"--image {args.image}: no such file")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        p.error(f"--checkpoint {args.checkpoint}: no such file")
    if args.authors and not (Path(args.authors) / "models" / "tcm.py").is_file():
        p.error(f"--authors {args.authors}: no models/tcm.py there (give a clone of jmliu206/LIC_TCM)")
    if args.authors and not {"compress", "decompress"} & set(args.measures):
        p.error("--authors: measure compress (and decompress) to compare with the authors' code")
    if args.authors:
        args.authors = str(Path(args.authors).resolve())  # the workers run from the repository's root
    from models.coding import CodingMode

    args.coding = list(dict.fromkeys(args.coding or CodingMode.all()))  # each mode once, in the order given
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from evaluation.benchmark import run_bench
    from utils.process import keep_freed_memory

    keep_freed_memory()  # large activations reuse freed memory instead of faulting pages in
    return run_tool(PROG, lambda: run_bench(args, argv))


if __name__ == "__main__":
    sys.exit(main())
