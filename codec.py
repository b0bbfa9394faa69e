"""Compress images to ``.tcm`` files and back with a TCM checkpoint.

    python codec.py compress IMAGE [IMAGE ...] OUT --checkpoint CK [--tile PIXELS] [--transforms T] [--entropy E]
        [--max-pixels N] [-f] [-q]
    python codec.py decompress FILE [FILE ...] OUT [--checkpoint CK] [--transforms T] [--max-pixels N] [-f] [-q]
    python codec.py info FILE [FILE ...]

One input writes OUT as a file (or into OUT if it is a folder or ends in /);
several inputs write into the folder OUT, one output each (``NAME.tcm`` /
``NAME.png``).  Each file done is one line on stdout (input -> output, size,
bits per pixel, its coding time (reading, coding and writing it) and the wall
time since the process started, start-up included; ``-q`` leaves them out); every failure is one line on
stderr naming its input; the others are still processed and the exit status
is 1 if any failed.  Outputs are written to a temporary file and renamed, so
an existing output is only ever replaced by a complete one, and temporaries
that a killed run left are removed by the next run into that folder.  An
input (the checkpoint included) is never overwritten; an existing file that
holds something else than what would be written (an image where a .tcm file
would go) only with ``-f``.  The file layout is documented in
``file_codec/container.py``.

Files decode on any machine: the means and scales the coder uses are computed
in exact integers from the integer parameters release files carry (float64
for weights without them; the coding mode's entropy arithmetic, recorded in
the file, ``--entropy``); the transforms run in ``--transforms`` (float32 or
bfloat16; bfloat16 by default where the CPU has it natively), which encoder
and decoder need not share (``models.coding``).  ``--checkpoint`` defaults to the
environment variable ``TCM_CHECKPOINT``.  Without either, decompress finds
the weights a file names in ``pretrained/`` and the folders of
``TCM_WEIGHTS_PATH`` (``file_codec/weights.py``); ``info`` says where.
A file claiming more than ``--max-pixels`` (default 2**26, 67 Mpx) is refused
before any decoding, as Pillow refuses decompression bombs, and so is an image
to compress, saying what holding it would take: an image is held whole as 8-bit
RGB and the model sees one tile at a time (docs/format.md, Memory).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from file_codec import container
from file_codec.files import (CHECKPOINT_ENV, PROG, check_folders_writable, compress_files, decompress_files,
                              info_files, plan_outputs)
from file_codec.settings import (DEFAULT_ENTROPY, DEFAULT_TILE, ENTROPIES, FALLBACK_ENTROPY, TRANSFORMS,
                                 default_transforms, tile_argument)
from file_codec.weights import WEIGHTS_PATH_ENV
from utils.cli import ArgumentParser, UsageError, run_tool
from utils.process import keep_freed_memory


def pixel_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of pixels")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    default_ck = os.environ.get(CHECKPOINT_ENV)
    transforms = dict(choices=list(TRANSFORMS), default=default_transforms(),
                      help="arithmetic of the transforms (default here: %(default)s; bfloat16 where the CPU has it "
                           "natively); files decode with either")
    force = dict(action="store_true",
                 help="replace an existing output that holds something else (an input is never replaced)")
    quiet = dict(action="store_true", help="no line per file done (failures are still reported)")
    c = sub.add_parser("compress", help="images -> .tcm files")
    c.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE")
    c.add_argument("out", metavar="OUT")
    c.add_argument("--checkpoint", "-c", default=default_ck, help=f"weights (default: ${CHECKPOINT_ENV})")
    c.add_argument("--tile", type=tile_argument, default=DEFAULT_TILE,
                   help=f"code images whose padded side exceeds this in tiles of this side; the memory coding takes "
                        f"grows with a tile's area (default {DEFAULT_TILE})")
    c.add_argument("--transforms", **transforms)
    c.add_argument("--entropy", choices=ENTROPIES, default=None,
                   help=f"arithmetic of the entropy parameters (default {DEFAULT_ENTROPY} for weights that carry "
                        f"integer parameters, as release files do, else {FALLBACK_ENTROPY}; int8: exact integers, "
                        "files decode on any machine; float64: the published function, decodes on other machines "
                        "but for a chance below 1e-8 per image; float32: the published function, decodes only alike)")
    c.add_argument("--max-pixels", type=pixel_count, default=container.DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse images of more pixels than this, before decoding them: the image is held whole, "
                        "at 4 bytes a pixel (default %(default)s)")
    c.add_argument("-f", "--force", **force)
    c.add_argument("-q", "--quiet", **quiet)
    d = sub.add_parser("decompress", help=".tcm files -> images")
    d.add_argument("inputs", nargs="+", type=Path, metavar="FILE")
    d.add_argument("out", metavar="OUT")
    d.add_argument("--checkpoint", "-c", default=default_ck,
                   help=f"weights (default: ${CHECKPOINT_ENV}; without either, the weights each file names are "
                        f"looked for in pretrained/ and the folders of ${WEIGHTS_PATH_ENV})")
    d.add_argument("--transforms", **transforms)
    d.add_argument("--max-pixels", type=pixel_count, default=container.DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse files claiming more pixels than this, before decoding them: a guard against "
                        "decompression bombs (default %(default)s)")
    d.add_argument("-f", "--force", **force)
    d.add_argument("-q", "--quiet", **quiet)
    i = sub.add_parser("info", help="print the header of .tcm files")
    i.add_argument("inputs", nargs="+", type=Path, metavar="FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # large activations reuse freed memory instead of faulting pages in

    def body() -> int:
        if args.command == "info":
            return info_files(args.inputs)  # headers only: neither torch nor the model is loaded
        if not args.checkpoint and args.command == "compress":
            raise UsageError(f"compress needs --checkpoint CK (or {CHECKPOINT_ENV})")
        # A folder no output can be written into is refused before the seconds of loading a model.
        check_folders_writable(plan_outputs(args.inputs, args.out, ".tcm" if args.command == "compress" else ".png"))
        from file_codec.codec import Codec, default_mode  # torch and CompressAI: seconds to import

        def load(checkpoint: str | Path) -> Codec:
            entropy = getattr(args, "entropy", None)  # decoding: each file's own
            codec = Codec.load(checkpoint, entropy and f"{entropy}/{args.transforms}",
                               getattr(args, "tile", DEFAULT_TILE), max_pixels=args.max_pixels)
            if entropy is None:  # int8 for a release file, float64 for others: `info` says which a file holds
                codec.mode = default_mode(codec.net, args.transforms)
            return codec

        options = dict(force=args.force, quiet=args.quiet,
                       also_read=[Path(args.checkpoint)] if args.checkpoint else [])
        if args.command == "compress":
            return compress_files(load(args.checkpoint), args.inputs, args.out, **options)
        if args.checkpoint:
            codec = load(args.checkpoint)
            return decompress_files(lambda _: codec, args.inputs, args.out, **options)
        from file_codec.weights import WeightsFinder

        finder = WeightsFinder(load)
        return decompress_files(lambda header: finder.codec_for(header.weights_id, header.tables_id or None),
                                args.inputs, args.out, **options)

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
