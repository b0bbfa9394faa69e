"""Evaluate TCM checkpoints on an image folder: rates, PSNR / MS-SSIM, times, RD curves.

    python eval.py --checkpoint CK [CK ...] --data DIR [--cuda] [--real [--coding ENTROPY/TRANSFORMS]]
                   [--output results.json] [--plot rd.png] [--anchor FILE ...]
                   [--baselines jpeg webp avif] [--which best|latest] [--tile PX] [--resume] [--verbose] [-f]
                   [--report DIR [--report-format light|full]]

A checkpoint argument may be a folder: a train.py run, a sweep of runs (one
point per run), or a folder of release files.  Without ``--real`` the rate
is estimated from the likelihoods of the model's forward pass (the paper's
evaluation); with ``--real`` each image is entropy-coded and decoded, and the
rate is the bitstream's, coded in ``--coding`` (default float32/float32, the
published function; ``models.coding``).  Images are padded (centred, zeros)
to multiples of 128 and the reconstruction cropped back; rates are over the
original pixels.

No output may be one of the files the run reads (checkpoints, images,
anchors); an existing output holding something else than what would be
written (a checkpoint or an image where the results JSON goes, anything but
a PNG where a .png plot goes) is refused before the first image unless
``--force`` is given.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from evaluation import baselines
from evaluation.runner import run_evaluation
from file_codec.settings import tile_argument
from models.coding import CodingMode, coding_argument
from utils.cli import ArgumentParser, run_tool
from utils.process import keep_freed_memory

PROG = "eval.py"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description="Evaluate TCM checkpoints on an image folder. An output never "
                                              "replaces an input, nor (without --force) a file of another kind.")
    p.add_argument("--checkpoint", nargs="+", required=True,
                   help="checkpoint files, train.py run folders, or sweep folders (one point per run)")
    p.add_argument("--which", choices=("best", "latest"), default="best",
                   help="the checkpoint a run folder gives (default: %(default)s)")
    p.add_argument("--data", nargs="+", required=True,
                   help="image folders (Kodak, Tecnick, CLIC, …) or image files")
    p.add_argument("--cuda", action="store_true", help="run the model on the GPU")
    p.add_argument("--real", action="store_true", help="entropy-code and decode: real bitstream rates")
    p.add_argument("--output", help="results JSON (CompressAI format), per-image rows included")
    p.add_argument("--plot", help="RD plot image (PSNR-bpp and MS-SSIM-bpp)")
    p.add_argument("--anchor", nargs="+", default=[], metavar="FILE", help="results files to compare with")
    p.add_argument("--baselines", nargs="+", default=[], choices=list(baselines.CODECS),
                   help="classical codecs measured on the same images (Pillow)")
    p.add_argument("--baseline-qualities", nargs="+", type=int, default=list(baselines.DEFAULT_QUALITIES),
                   metavar="Q", help="quality sweep of the baselines (default: %(default)s)")
    p.add_argument("--name", default="TCM", help="name of the evaluated curve (default: %(default)s)")
    p.add_argument("--coding", type=coding_argument, default=None, metavar="ENTROPY/TRANSFORMS",
                   help=f"with --real: the coding mode, one of {', '.join(map(str, CodingMode.all()))} "
                        f"(default: {CodingMode.PUBLISHED}, the paper's function; codec.py writes float64 entropy)")
    p.add_argument("--tile", type=tile_argument, default=None, metavar="PIXELS",
                   help="code each image in tiles of this side, as codec.py does (for images too large at once)")
    p.add_argument("--save-recon", metavar="DIR",
                   help="keep each decoded image (and, with --baselines, each codec's at the matching rate) here")
    p.add_argument("--report", metavar="DIR",
                   help="write a self-contained page here: RD plots, tables, images side by side, bit maps")
    p.add_argument("--report-format", choices=("light", "full"), default="light",
                   help="light: full views as JPEG q=92 (4:4:4), crops and bit maps lossless PNG; "
                        "full: every picture lossless PNG, several times larger (default: %(default)s)")
    p.add_argument("--figure", metavar="PATH", help="a figure of one image's crops across codecs at matched rate")
    p.add_argument("--figure-image", metavar="NAME", help="the image of --figure (default: the first)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: reuse the image rows kept beside --output")
    p.add_argument("--verbose", action="store_true", help="print one row per image")
    p.add_argument("-f", "--force", action="store_true",
                   help="replace existing outputs that hold something else than what is written "
                        "(an input is never replaced)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    keep_freed_memory()  # large activations reuse freed memory instead of faulting pages in
    return run_tool(PROG, lambda: run_evaluation(args))


if __name__ == "__main__":
    sys.exit(main())
