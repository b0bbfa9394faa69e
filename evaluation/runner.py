"""An evaluation run: checkpoints over an image folder, baselines, BD figures, outputs.

``eval.py`` parses the command line and calls :func:`run_evaluation`; the
steps it takes are the functions of this package.  Everything that can be
refused is refused before the first image (outputs that cannot be written,
a plot format matplotlib lacks, bad checkpoints, anchors or data), and every
finished image is kept on disk as it comes (``evaluation.progress``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from models.coding import Coder, CodingMode
from utils.cli import UsageError
from utils.files import check_output, check_writable, kind_of_name
from utils.provenance import provenance

from . import baselines
from .bd import FEW_OVERLAP, bd_metrics
from .evaluate import evaluate_image, mean_point
from .inputs import Checkpoint, EvalError, find_checkpoints, load_checkpoints, load_images
from .plots import check_plot_path, plot_rd
from .progress import Key, RowStore, image_digest, partial_path, row_key
from .report import page_size, write_report
from .visuals import Visuals, figure_names
from .results import distinct_names, read_results, results_document, write_json
from .tables import COLUMNS, QUALITY_KEYS, table

#: Exit status when a decoded image differs from the encoder's reconstruction.
EXIT_MISMATCH = 3
PROG = "eval.py"


def baseline_path(output: str | None, codec: str) -> Path | None:
    """Where a baseline's results file goes: beside ``--output``, ``<stem>-<codec>.json``."""
    if not output:
        return None
    out = Path(output)
    return out.with_name(f"{out.name.removesuffix('.json')}-{codec}.json")


def check_outputs(args: argparse.Namespace) -> None:
    """Every output can be written and every format is known, before any work."""
    if args.resume and not args.output:
        raise UsageError("--resume continues the rows kept beside --output: give the same --output")
    if args.output:
        check_writable(args.output)
        for codec in args.baselines:
            check_writable(baseline_path(args.output, codec), f"{codec} results")
    if args.plot:
        check_plot_path(args.plot)
    if args.figure:
        check_plot_path(args.figure)
    if args.report:
        check_writable(Path(args.report) / "index.html", "report")
    if args.save_recon:
        check_writable(Path(args.save_recon) / "probe.png", "reconstructions folder")
    if args.coding is not None and not args.real:
        raise UsageError("--coding is how --real codes: give --real too")


def input_files(args: argparse.Namespace, checkpoints: list[Path]) -> list[Path]:
    """Every file the run reads: checkpoints, images (each file of a --data folder) and anchors."""
    files = [*checkpoints, *map(Path, args.anchor)]
    for item in map(Path, args.data):
        files += [f for f in item.iterdir() if f.is_file()] if item.is_dir() else [item]
    return files


def check_replaced_outputs(args: argparse.Namespace, checkpoints: list[Path]) -> None:
    """No output is an input (checkpoint, image, anchor), and none replaces a file of another kind
    (a checkpoint or an image where results JSON would go) unless --force; before any image."""
    inputs = input_files(args, checkpoints)
    outputs: list[tuple[str, Path, str]] = []
    if args.output:
        outputs.append(("--output", Path(args.output), "json"))
        outputs += [(f"{codec} results", baseline_path(args.output, codec), "json") for codec in args.baselines]
        # eval's own rows file (appended to by --resume): only kept from being an input
        check_output(partial_path(args.output), "unknown", inputs, force=True, what="the rows file of --output")
    for option, value in (("--plot", args.plot), ("--figure", args.figure)):
        if value:
            outputs.append((option, Path(value), kind_of_name(value)))
    if args.report:
        outputs += [("--report", Path(args.report) / "index.html", "html"),
                    ("--report", Path(args.report) / "rd.png", "png")]
    for what, path, kind in outputs:
        check_output(path, kind, inputs, force=args.force, what=what)


def bd_note(fig: dict[str, Any]) -> str:
    """A BD figure as a line, with a caveat where it rests on little overlap."""
    gap = (f"; at {fig['gap-points']} of the model's rates the quality differs by {fig['gap']:+.2f}"
           if fig.get("gap") is not None else "")
    if fig["bd-rate"] is None:
        psnr = f"BD-PSNR {fig['bd-psnr']:+.3f} dB; " if fig.get("bd-psnr") is not None else ""
        return f"{psnr}— ({fig.get('note', 'not computable')}){gap}"
    line = f"BD-rate {fig['bd-rate']:+.2f} %, BD-PSNR {fig['bd-psnr']:+.3f} dB (overlap {fig['overlap']:.0%})"
    if fig["overlap"] < FEW_OVERLAP:
        line += f"; caution: the curves share only {fig['overlap']:.0%} of their quality range{gap}"
    return line


def coding(args: argparse.Namespace) -> CodingMode:
    """How ``--real`` codes: ``--coding``, by default the published function."""
    return args.coding or CodingMode.PUBLISHED


def rate_mode(args: argparse.Namespace) -> str:
    """How rates are obtained: ``estimated``, ``real`` (the published function) or ``real <coding mode>``."""
    if not args.real:
        return "estimated"
    return "real" if coding(args) == CodingMode.PUBLISHED else f"real {coding(args)}"


def row_keys(ck: Checkpoint, images: list, digests: dict[str, str], device: torch.device,
             args: argparse.Namespace) -> list[Key]:
    """The resume key of each image's row for this checkpoint (``evaluation.progress.row_key``)."""
    return [row_key(ck.sha256, rate_mode(args), args.tile or 0, device.type, name, digests[name])
            for name, _ in images]


def evaluate_checkpoint(ck: Checkpoint, images: list, resume_keys: list[Key], device: torch.device,
                        args: argparse.Namespace, store: RowStore, visuals: Visuals) -> list[dict[str, Any]]:
    """Every image through one checkpoint, resumed rows reused, each new row kept at once."""
    model = ck.model.to(device)
    coder = Coder(model, coding(args)) if args.real else None
    rows = []
    if args.verbose:  # the columns of this mode, known before the first image
        width = max(len(n) for n, _ in images)
        keys = ("bpp", "bpp-estimated", "rate-ratio", *QUALITY_KEYS, "encoding_time", "decoding_time") \
            if args.real else ("bpp", *QUALITY_KEYS, "forward_time")
        cols = [c for c in COLUMNS if c[0] in keys]
        print(f"\n{ck.name}\n" + table([], "image", width, cols))
    with tqdm(images, desc=ck.name, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
        for (image_name, img), key in zip(bar, resume_keys, strict=True):
            row = store.get(key)
            if row is None:
                outputs: dict[str, Any] | None = {} if visuals.active else None
                row = {"image": image_name, **evaluate_image(model, img, device, args.real, args.tile, coder, outputs)}
                if outputs:
                    visuals.add_model(ck.name, image_name, img, row, outputs)
                store.add(key, row)
            elif visuals.active:
                visuals.add_resumed(ck.name, image_name, img, row)
            rows.append(row)
            if args.real and not row["matches-encoder"]:
                why = ("decoded size differs from the input" if not row["decoded-size-ok"]
                       else f"decoded image differs from the encoder's reconstruction "
                            f"(max |diff| {row['max-abs-diff']:.3g})")
                tqdm.write(f"MISMATCH {ck.name} {image_name}: {why}", file=sys.stderr)
            if args.verbose:
                tqdm.write(table([(image_name, row)], "image", width, cols, header=False), file=sys.stdout)
    ck.model.cpu()
    return rows


def run_baselines(images: list, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each ``--baselines`` codec's sweep as a results document; an image a codec cannot code is a note."""
    docs = []
    for codec in args.baselines:
        total = len(images) * len(set(args.baseline_qualities))
        with tqdm(total=total, desc=codec, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            result = baselines.sweep(images, codec, args.baseline_qualities, bar.update)
        for image_name, why in result.skipped.items():
            print(f"note: {image_name} left out of the {codec} baseline: {why}", file=sys.stderr)
        docs.append(results_document(
            baselines.display_name(codec), f"{codec} quality sweep on {' '.join(args.data)}, measured in this run",
            result.points, per_image=result.per_image, **({"skipped": result.skipped} if result.skipped else {}),
        ))
    return docs


def run_evaluation(args: argparse.Namespace) -> int:
    """Evaluate as ``eval.py``'s options say; 0, or :data:`EXIT_MISMATCH` if a decoder disagreed."""
    if args.cuda and not torch.cuda.is_available():
        raise EvalError("--cuda given but no CUDA device is available")
    device = torch.device("cuda" if args.cuda else "cpu")
    check_outputs(args)
    baselines.check_codecs(args.baselines)
    baselines.check_qualities(args.baseline_qualities)
    taken = [args.name, *(baselines.display_name(codec) for codec in args.baselines)]
    anchors = distinct_names([read_results(a) for a in args.anchor], args.anchor, taken)
    checkpoint_files = find_checkpoints(args.checkpoint, args.which)
    check_replaced_outputs(args, checkpoint_files)
    checkpoints = load_checkpoints(checkpoint_files)
    images = load_images(args.data)
    figure_names(args.figure_image, images)
    store = RowStore(args.output, args.resume)
    digests = {name: image_digest(img) for name, img in images}
    keys = {ck.name: row_keys(ck, images, digests, device, args) for ck in checkpoints}
    visuals = Visuals(args.save_recon, args.report, args.figure, args.figure_image, args.report_format,
                      image_names=[name for name, _ in images])
    data = " ".join(args.data)
    reused, again = store.match(k for ck_keys in keys.values() for k in ck_keys)
    print(f"{len(images)} images from {data}; {len(checkpoints)} checkpoint(s); "
          f"{'real bitstreams' if args.real else 'estimated rates'} on {device}"
          + (f"; {reused} rows resumed from {store.path}" if args.resume else ""), file=sys.stderr)
    if again:
        print(f"note: {', '.join(again[:5])}{' …' if len(again) > 5 else ''}: the rows kept under "
              f"{'these names' if len(again) > 1 else 'this name'} were of other pixels or another setting "
              "(device, mode, tile): evaluated again", file=sys.stderr)

    points, per_image = [], {}
    try:
        for ck in checkpoints:
            rows = evaluate_checkpoint(ck, images, keys[ck.name], device, args, store, visuals)
            points.append({"checkpoint": ck.name, "lambda": ck.lmbda, "metric": ck.metric, "N": ck.model.N,
                           "sha256": ck.sha256, **mean_point(rows)})
            per_image[ck.name] = rows
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (utils.cli.run_tool): say what is kept, then stop
        store.close(finished=False)
        if store.path is not None:
            print(f"{PROG}: {store.added} new image rows ({len(store.done)} in all) are kept in {store.path}: "
                  "the same command with --resume continues", file=sys.stderr)
        raise

    mode = "real bitstreams" if args.real else "rates estimated from likelihoods"
    if args.real:
        mode += f", coding {coding(args)}"
    coded = str(coding(args)) if args.real else None  # estimated rates code nothing
    doc = results_document(
        args.name, f"TCM on {data}, {mode}, {len(images)} images", points, coding=coded,
        checkpoints=[ck.describe() for ck in checkpoints], per_image=per_image,
        provenance={**provenance(device), "tile": args.tile, "coding": coded},
    )
    base_docs = run_baselines(images, args)
    skipped = {codec: b["skipped"] for codec, b in zip(args.baselines, base_docs) if b.get("skipped")}
    if skipped:
        doc["baselines-skipped"] = skipped
    if args.output:
        for codec, b_doc in zip(args.baselines, base_docs):
            write_json(baseline_path(args.output, codec), b_doc)

    print(table([(p["checkpoint"], p) for p in sorted(points, key=lambda p: p["bpp"])], "checkpoint"))
    for b in base_docs:
        res = b["results"]
        if not res.get("quality"):
            print(f"\n{b['name']}: no image could be coded")
            continue
        rows = [(f"q={q}", {k: res[k][i] for k in res}) for i, q in enumerate(res["quality"])]
        print(f"\n{b['name']}\n" + table(rows, "quality"))
    bd = {}
    for other in anchors + base_docs:
        fig = bd_metrics(other, doc)
        bd[fig["anchor"]] = fig
    if bd:
        print(f"\nBD against each anchor (PCHIP; negative BD-rate: {args.name} needs fewer bits)")
        for anchor_name, fig in bd.items():
            print(f"  {anchor_name}: {bd_note(fig)}")
        doc["bd"] = bd

    if visuals.active and args.baselines:
        doc["matched"] = visuals.add_baselines(images, per_image, base_docs, args.baselines)
    title = ", ".join(Path(d).name or d for d in args.data)
    if args.output:
        write_json(args.output, doc)
    if args.plot:
        plot_rd([doc, *base_docs, *anchors], args.plot, title=title, measured=1)
    if args.figure:
        visuals.write_figure(images, [ck.name for ck in checkpoints], args.baselines, args.name)
    if args.report:
        plot_rd([doc, *base_docs, *anchors], Path(args.report) / "rd.png", title=title, measured=1)
        page = write_report(visuals, doc, bd, args.baselines, "rd.png")
        size, files = page_size(page)
        print(f"report: {page} ({size / 1e6:.1f} MB in {files} files, {args.report_format} format)", file=sys.stderr)
    store.close(finished=True)
    mismatches = sum(p.get("mismatches", 0) for p in points)
    if mismatches:
        print(f"{PROG}: error: {mismatches} decoded image(s) differ from the encoder's reconstruction",
              file=sys.stderr)
        return EXIT_MISMATCH
    return 0

