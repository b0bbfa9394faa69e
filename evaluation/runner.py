"""An evaluation run: checkpoints over an image folder, baselines, BD figures, outputs.

``eval.py`` parses the command line and calls :func:`run_evaluation`; the
steps it takes are the functions of this package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from models import checkpoint_stem, load_model

from . import baselines
from .bd import bd_metrics
from .evaluate import evaluate_image, mean_point
from .inputs import EvalError, find_checkpoints, load_images
from .plots import plot_rd
from .results import read_results, results_document, write_json
from .tables import COLUMNS, QUALITY_KEYS, table

#: Exit status when a decoded image differs from the encoder's reconstruction.
EXIT_MISMATCH = 3


def baseline_path(output: str | None, codec: str) -> Path | None:
    """Where a baseline's results file goes: beside ``--output``, ``<stem>-<codec>.json``."""
    if not output:
        return None
    out = Path(output)
    return out.with_name(f"{out.name.removesuffix('.json')}-{codec}.json")


def run_evaluation(args: argparse.Namespace) -> int:
    """Evaluate as ``eval.py``'s options say; 0, or :data:`EXIT_MISMATCH` if a decoder disagreed."""
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.cuda and not torch.cuda.is_available():
        raise EvalError("--cuda given but no CUDA device is available")
    baselines.check_codecs(args.baselines)
    baselines.check_qualities(args.baseline_qualities)
    anchors = [read_results(a) for a in args.anchor]
    paths = find_checkpoints(args.checkpoint)
    models = []
    for path in paths:  # load all first: a bad file fails before hours of evaluation
        models.append((checkpoint_stem(path), path, load_model(path, "cpu")))
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
    doc = results_document(
        args.name, f"TCM on {args.data}, {mode}, {len(images)} images", points,
        checkpoints=[{"name": n, "path": str(p)} for n, p, _ in models], per_image=per_image,
    )

    base_docs = []
    for codec in args.baselines:
        total = len(images) * len(set(args.baseline_qualities))
        with tqdm(total=total, desc=codec, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            b_points, b_rows = baselines.sweep(images, codec, args.baseline_qualities, bar.update)
        b_doc = results_document(
            baselines.display_name(codec), f"{codec} quality sweep on {args.data}, measured in this run",
            b_points, per_image=b_rows,
        )
        base_docs.append(b_doc)
        if (bpath := baseline_path(args.output, codec)) is not None:
            write_json(bpath, b_doc)

    print(table([(p["checkpoint"], p) for p in sorted(points, key=lambda p: p["bpp"])], "checkpoint"))
    for b in base_docs:
        res = b["results"]
        rows = [(f"q={q}", {k: res[k][i] for k in res}) for i, q in enumerate(res["quality"])]
        print(f"\n{b['name']}\n" + table(rows, "quality"))

    bd = {}
    for other in anchors + base_docs:
        fig = bd_metrics(other, doc)
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
        write_json(args.output, doc)
    if args.plot:
        plot_rd([doc, *base_docs, *anchors], args.plot, title=f"{Path(args.data).name or args.data}", measured=1)
    mismatches = sum(p.get("mismatches", 0) for p in points)
    if mismatches:
        print(f"eval.py: error: {mismatches} decoded image(s) differ from the encoder's reconstruction",
              file=sys.stderr)
        return EXIT_MISMATCH
    return 0


