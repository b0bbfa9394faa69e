"""Evaluate TCM checkpoints on an image folder: rates, PSNR / MS-SSIM, times, RD curves.

    python eval.py --checkpoint CK [CK ...] --data DIR [--cuda] [--real]
                   [--output results.json] [--plot rd.png] [--anchor FILE ...]
                   [--baselines jpeg webp avif] [--verbose]

A checkpoint argument may be a folder (a sweep).  Without ``--real`` the rate
is estimated from the likelihoods of the model's forward pass (the paper's
evaluation); with ``--real`` each image is entropy-coded and decoded, and the
rate is the bitstream's.  Images are padded (centred, zeros) to multiples of
128 and the reconstruction cropped back; rates are over the original pixels.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

import baselines
import rd
from datasets import IMAGE_EXTENSIONS, ImageReadError, open_rgb, to_tensor
from models import CheckpointError, load_model
from utils import crop, keep_freed_memory, pad

#: Files a checkpoint folder may hold.
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")
#: updates.py's release names: ``<name>-<8 hex digits of sha256>.pth.tar``.
RELEASE_NAME = re.compile(r"-[0-9a-f]{8}\.pth\.tar$")
#: Exit status when a decoded image differs from the encoder's reconstruction.
EXIT_MISMATCH = 3


class EvalError(Exception):
    """Bad input to the evaluation; the message is one readable line."""


# --------------------------------------------------------------------------- inputs
def checkpoint_name(path: Path) -> str:
    name = path.name
    for suffix in CHECKPOINT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def find_checkpoints(args: Sequence[str]) -> list[Path]:
    """Checkpoint files of the arguments; a folder gives its release and best checkpoints.

    In a folder, release files (``updates.py`` names) and files with "best" in
    their name are taken; a folder with neither gives all its checkpoint files.
    """
    found: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files = sorted(
                f for f in path.iterdir()
                if f.is_file() and not f.name.startswith(".") and f.name.endswith(CHECKPOINT_SUFFIXES)
            )
            chosen = [f for f in files if RELEASE_NAME.search(f.name) or "best" in f.name.lower()]
            if not (chosen or files):
                raise EvalError(f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) in folder {path}")
            found += chosen or files
        elif path.is_file():
            found.append(path)
        else:
            raise EvalError(f"checkpoint not found: {path}")
    return found


def load_images(data: str) -> list[tuple[str, Image.Image]]:
    """All readable images of a folder (or one image file) as 8-bit RGB.

    Unreadable files and files without an image extension are reported on
    stderr by name and skipped; dotfiles are ignored.  Grayscale, palette,
    RGBA, CMYK and 16-bit images are converted by ``datasets.open_rgb``.
    """
    path = Path(data)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    elif path.is_file():
        files = [path]
    else:
        raise EvalError(f"data not found: {path}")
    images = []
    for f in files:
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            print(f"skipping {f}: not an image file", file=sys.stderr)
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                img = open_rgb(f)
            except ImageReadError as e:
                print(f"skipping {e}", file=sys.stderr)
                continue
        for w in caught:
            print(f"note: {w.message}", file=sys.stderr)
        images.append((f.name, img))
    if not images:
        raise EvalError(f"no readable images in {path}")
    return images


# --------------------------------------------------------------------------- one image
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bits(likelihoods: dict[str, Tensor]) -> float:
    """Estimated size in bits: the sum of -log2 of the likelihoods."""
    return float(sum(torch.log2(lik).sum().neg().item() for lik in likelihoods.values()))


@torch.no_grad()
def evaluate_image(model, img: Image.Image, device: torch.device, real: bool) -> dict[str, Any]:
    """Rates, qualities and times of one image (see the module docstring)."""
    x = to_tensor(img).to(device)
    h, w = x.shape[-2:]
    pixels = h * w
    xp, padding = pad(x, 128)
    row: dict[str, Any] = {"width": w, "height": h}
    if not real:
        _sync(device)
        t0 = time.perf_counter()
        out = model(xp)
        _sync(device)
        row["forward_time"] = time.perf_counter() - t0
        x_hat = crop(out["x_hat"], padding).clamp_(0, 1)
        row["bpp-estimated"] = bits(out["likelihoods"]) / pixels
        row["bpp"] = row["bpp-estimated"]
    else:
        _sync(device)
        t0 = time.perf_counter()
        enc = model.compress(xp)
        _sync(device)
        t1 = time.perf_counter()
        dec = model.decompress(enc["strings"], enc["shape"])
        x_hat = crop(dec["x_hat"], padding)
        _sync(device)
        t2 = time.perf_counter()
        nbytes = sum(len(s) for strings in enc["strings"] for s in strings)
        # What the encoder committed to: its own y_hat through g_s. A correct
        # decoder, recovering the same symbols, gives the same image.
        reference = crop(model.g_s(enc["y_hat"]).clamp_(0, 1), padding)
        likelihoods = enc["likelihoods"]
        row.update(encoding_time=t1 - t0, decoding_time=t2 - t1, bytes=nbytes)
        row["bpp"] = row["bpp-real"] = nbytes * 8.0 / pixels
        row["bpp-estimated"] = bits(likelihoods) / pixels
        row["rate-ratio"] = row["bpp-real"] / row["bpp-estimated"]
        row["decoded-size-ok"] = tuple(x_hat.shape[-2:]) == (h, w)
        if row["decoded-size-ok"]:
            row["max-abs-diff"] = float((x_hat - reference).abs().max().item())
            row["matches-encoder"] = bool(torch.equal(rd.quantize_8bit(x_hat), rd.quantize_8bit(reference)))
        else:
            row["max-abs-diff"] = float("nan")
            row["matches-encoder"] = False
    x_hat = x_hat.cpu()
    x = x.cpu()
    if tuple(x_hat.shape) == tuple(x.shape):
        row.update(rd.quality(x, x_hat))
        row.update(rd.quality(x, rd.quantize_8bit(x_hat), suffix="-8bit"))
    return row


# --------------------------------------------------------------------------- summaries
def mean_point(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Averages over images (NaN/None ignored); mismatches counted, never averaged."""
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)]
    keys = [k for k in keys if k not in ("width", "height", "bytes", "rate-ratio", "max-abs-diff")]
    point: dict[str, Any] = {}
    for k in keys:
        vals = [r.get(k) for r in rows]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        point[k] = float(np.mean(vals)) if vals else float("nan")
    if "bpp-real" in point:
        point["rate-ratio"] = point["bpp-real"] / point["bpp-estimated"]
        point["mismatches"] = sum(not r["matches-encoder"] for r in rows)
        point["max-abs-diff"] = max(r["max-abs-diff"] for r in rows)
    point["images"] = len(rows)
    return point


def _fmt(v: Any, spec: str) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


COLUMNS = [  # (key, header, format)
    ("bpp", "bpp", ".4f"),
    ("bpp-estimated", "est.bpp", ".4f"),
    ("rate-ratio", "real/est", ".4f"),
    ("psnr-rgb", "PSNR", ".3f"),
    ("psnr-rgb-8bit", "PSNR-8b", ".3f"),
    ("ms-ssim-rgb", "MS-SSIM", ".5f"),
    ("ms-ssim-rgb-db", "MS-SSIM dB", ".3f"),
    ("ms-ssim-rgb-8bit", "MS-SSIM-8b", ".5f"),
    ("encoding_time", "enc s", ".3f"),
    ("decoding_time", "dec s", ".3f"),
    ("forward_time", "fwd s", ".3f"),
    ("mismatches", "mismatch", "d"),
]


QUALITY_KEYS = ("psnr-rgb", "psnr-rgb-8bit", "ms-ssim-rgb", "ms-ssim-rgb-db", "ms-ssim-rgb-8bit")


def columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The :data:`COLUMNS` that any of ``rows`` has."""
    return [c for c in COLUMNS if any(c[0] in r for r in rows)]


def table(rows: Sequence[tuple[str, dict[str, Any]]], first: str, width: int = 0,
          cols: Sequence[tuple[str, str, str]] | None = None, header: bool = True) -> str:
    """Fixed-width text table of (label, metrics) rows."""
    cols = columns([r for _, r in rows]) if cols is None else cols
    width = max([width, len(first)] + [len(label) for label, _ in rows])
    lines = [f"{first:<{width}}  " + "  ".join(f"{h:>10}" for _, h, _ in cols)] if header else []
    for label, r in rows:
        lines.append(f"{label:<{width}}  " + "  ".join(f"{_fmt(r.get(k), f):>10}" for k, _, f in cols))
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate TCM checkpoints on an image folder.")
    p.add_argument("--checkpoint", nargs="+", required=True, help="checkpoint files or folders (sweeps)")
    p.add_argument("--data", required=True, help="image folder (Kodak, Tecnick, CLIC, …) or one image")
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
    p.add_argument("--verbose", action="store_true", help="print one row per image")
    return p.parse_args(argv)


def baseline_path(output: str | None, codec: str) -> Path | None:
    """Where a baseline's results file goes: beside ``--output``, ``<stem>-<codec>.json``."""
    if not output:
        return None
    out = Path(output)
    return out.with_name(f"{out.name.removesuffix('.json')}-{codec}.json")


def run(args: argparse.Namespace) -> int:
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.cuda and not torch.cuda.is_available():
        raise EvalError("--cuda given but no CUDA device is available")
    baselines.check_codecs(args.baselines)
    baselines.check_qualities(args.baseline_qualities)
    anchors = [rd.read_results(a) for a in args.anchor]
    paths = find_checkpoints(args.checkpoint)
    models = []
    for path in paths:  # load all first: a bad file fails before hours of evaluation
        try:
            models.append((checkpoint_name(path), path, load_model(path, "cpu")))
        except CheckpointError as e:
            raise EvalError(str(e)) from None
    images = load_images(args.data)
    print(f"{len(images)} images from {args.data}; {len(models)} checkpoint(s); "
          f"{'real bitstreams' if args.real else 'estimated rates'} on {device}", file=sys.stderr)

    points, per_image = [], {}
    for name, path, model in models:
        model = model.to(device)
        rows = []
        if args.verbose:  # the columns of this mode, known before the first image
            width = max(len(n) for n, _ in images)
            keys = ("bpp", "bpp-estimated", "rate-ratio", *QUALITY_KEYS, "encoding_time", "decoding_time") \
                if args.real else ("bpp", *QUALITY_KEYS, "forward_time")
            cols = [c for c in COLUMNS if c[0] in keys]
            print(f"\n{name}\n" + table([], "image", width, cols))
        with tqdm(images, desc=name, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            for image_name, img in bar:
                row = {"image": image_name, **evaluate_image(model, img, device, args.real)}
                rows.append(row)
                if args.real and not row["matches-encoder"]:
                    why = ("decoded size differs from the input" if not row["decoded-size-ok"]
                           else f"decoded image differs from the encoder's reconstruction "
                                f"(max |diff| {row['max-abs-diff']:.3g})")
                    tqdm.write(f"MISMATCH {name} {image_name}: {why}", file=sys.stderr)
                if args.verbose:
                    tqdm.write(table([(image_name, row)], "image", width, cols, header=False), file=sys.stdout)
        model.cpu()
        point = {"checkpoint": name, "N": model.N, **mean_point(rows)}
        points.append(point)
        per_image[name] = rows

    mode = "real bitstreams" if args.real else "rates estimated from likelihoods"
    doc = rd.results_document(
        args.name, f"TCM on {args.data}, {mode}, {len(images)} images", points,
        checkpoints=[{"name": n, "path": str(p)} for n, p, _ in models], per_image=per_image,
    )

    base_docs = []
    for codec in args.baselines:
        total = len(images) * len(set(args.baseline_qualities))
        with tqdm(total=total, desc=codec, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            b_points, b_rows = baselines.sweep(images, codec, args.baseline_qualities, bar.update)
        b_doc = rd.results_document(
            baselines.display_name(codec), f"{codec} quality sweep on {args.data}, measured in this run",
            b_points, per_image=b_rows,
        )
        base_docs.append(b_doc)
        if (bpath := baseline_path(args.output, codec)) is not None:
            rd.write_json(bpath, b_doc)

    print(table([(p["checkpoint"], p) for p in sorted(points, key=lambda p: p["bpp"])], "checkpoint"))
    for b in base_docs:
        res = b["results"]
        rows = [(f"q={q}", {k: res[k][i] for k in res}) for i, q in enumerate(res["quality"])]
        print(f"\n{b['name']}\n" + table(rows, "quality"))

    bd = {}
    for other in anchors + base_docs:
        fig = rd.bd_metrics(other, doc)
        bd[fig["anchor"]] = fig
    if bd:
        print(f"\nBD against each anchor (PCHIP; negative BD-rate: {args.name} needs fewer bits)")
        for anchor_name, fig in bd.items():
            if fig["bd-rate"] is None:
                print(f"  {anchor_name}: — ({fig.get('note', 'not computable')})")
            else:
                print(f"  {anchor_name}: BD-rate {fig['bd-rate']:+.2f} %, BD-PSNR {fig['bd-psnr']:+.3f} dB "
                      f"(overlap {fig['overlap']:.0%})")
        doc["bd"] = bd

    if args.output:
        rd.write_json(args.output, doc)
    if args.plot:
        rd.plot_rd([doc, *base_docs, *anchors], args.plot, title=f"{Path(args.data).name or args.data}", measured=1)
    mismatches = sum(p.get("mismatches", 0) for p in points)
    if mismatches:
        print(f"error: {mismatches} decoded image(s) differ from the encoder's reconstruction", file=sys.stderr)
        return EXIT_MISMATCH
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    keep_freed_memory()  # large activations reuse freed memory instead of faulting pages in
    try:
        with warnings.catch_warnings():
            # A deprecation inside CompressAI's entropy models, raised on first use: noise to a user.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
            return run(args)
    except (EvalError, rd.RDError, baselines.BaselineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # an output path that cannot be written, a full disk, …
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
