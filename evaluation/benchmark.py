"""bench.py's measurements: each one a subprocess, so that its peak memory is its own.

See ``bench.py`` for what is measured; the primitives are in ``evaluation.speed``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from models.coding import Coder, CodingMode
from utils import ROOT
from utils.cli import ToolError
from utils.files import write_text_atomic
from utils.padding import pad
from utils.process import busy_note, load_average

from .options import CLOCKS, MEASURES
from .speed import PeakMemory, count_flops, matmul_rate, median_time

TRAIN_CROP = 256
#: The random-noise image measured where no ``--image`` is given (the size of a Kodak photograph).
NOISE_SIZE = (512, 768)
#: The name of the rows the authors' code runs (``--authors``).
AUTHORS = "authors' code"
#: A yardstick below this share of the best one of its arithmetic in the run: the machine was busy meanwhile.
SLOW_YARDSTICK = 0.7


class BenchError(ToolError):
    """Bad input: reported as one line."""


# ---------------------------------------------------------------- model and data
def build_model(args: argparse.Namespace, device: torch.device) -> nn.Module:
    from models import load_model, tcm

    if args.checkpoint:
        net = load_model(args.checkpoint)
    else:
        torch.manual_seed(0)
        net = tcm(args.model)
        net.update(force=True)
    net = net.to(device).eval()
    if args.compile:
        for name in ("g_a", "h_a", "g_s"):  # transforms that never feed the coding parameters
            setattr(net, name, torch.compile(getattr(net, name), dynamic=False))
    return net


def load_image(args: argparse.Namespace) -> torch.Tensor:
    """``--image`` as a padded batch of one, or random noise of :data:`NOISE_SIZE` without it."""
    from datasets.images import ImageReadError, open_rgb, to_tensor

    if args.image is None:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, 3, *NOISE_SIZE, generator=g)
    else:
        try:
            x = to_tensor(open_rgb(args.image, warn_alpha=False))
        except ImageReadError as e:
            raise BenchError(str(e)) from None
    if args.quick:
        x = x[..., :256, :256]
    return pad(x)[0]


def image_line(args: argparse.Namespace) -> str:
    """Which image the table measured, in words."""
    h, w = NOISE_SIZE
    if args.quick:
        h, w = min(h, 256), min(w, 256)
    if args.image is None:
        return (f"image: random noise, {w}x{h} (no --image given; its rANS coding costs more than a photograph's: "
                "give --image for a photograph's figures)")
    from PIL import Image

    with Image.open(args.image) as img:
        size = f"{min(img.width, 256)}x{min(img.height, 256)} crop of it" if args.quick else f"{img.width}x{img.height}"
    return f"image: {args.image} ({size})"


def yardstick_dtype(measure: str, mode: CodingMode) -> torch.dtype:
    """The arithmetic a measurement's FLOPs are mostly in: the transforms' (bfloat16 modes), else float32."""
    return mode.transforms_dtype if measure in ("compress", "decompress") else torch.float32


def training_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    if min(x.shape[-2:]) < TRAIN_CROP:
        raise BenchError(f"the image is smaller than the {TRAIN_CROP}x{TRAIN_CROP} training crops")
    g = torch.Generator().manual_seed(0)
    h, w = x.shape[-2:]
    crops = []
    for _ in range(batch):
        i = int(torch.randint(0, h - TRAIN_CROP + 1, (1,), generator=g))
        j = int(torch.randint(0, w - TRAIN_CROP + 1, (1,), generator=g))
        crops.append(x[0, :, i : i + TRAIN_CROP, j : j + TRAIN_CROP])
    return torch.stack(crops)


# ---------------------------------------------------------------- one measurement
def run_measure(args: argparse.Namespace) -> dict:
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.cuda else "cpu")
    load = load_average()
    net = build_model(args, device)
    x = load_image(args).to(device)
    if args.run_authors:  # a contiguous NCHW batch, as their eval.py's ToTensor gives it (ours reads HWC arrays)
        x = x.contiguous()
    dtype = yardstick_dtype(args.worker, args.coding[0])
    rate = matmul_rate(device, args.quick, clock, dtype)
    reps = args.repeats
    out: dict = {"measure": args.worker, "matmul_gflops": rate, "matmul_dtype": str(dtype).removeprefix("torch."),
                 "load": load}
    if args.worker in ("compress", "decompress"):
        out["coding"] = AUTHORS if args.run_authors else str(args.coding[0])
    strings_file = Path(args.strings_file)

    # Timed runs come first: ru_maxrss only grows, so nothing may run before them.
    if args.worker == "forward":
        with torch.inference_mode():
            with PeakMemory(device) as mem:
                out["time"] = median_time(lambda: net(x), reps, device, args.warmup, clock)
            y = net.g_a(x)
            y_hat = torch.round(y)
            parts = {"g_a": (net.g_a, x), "h_a": (net.h_a, y), "g_s": (net.g_s, y_hat)}
            for name, (mod, inp) in parts.items():
                out[f"time_{name}"] = median_time(lambda: mod(inp), reps, device, args.warmup, clock)
        y, y_hat = y.clone(), y_hat.clone()  # out of inference mode, for the counter
        parts = {"g_a": (net.g_a, x), "h_a": (net.h_a, y), "g_s": (net.g_s, y_hat)}
        for name, (mod, inp) in parts.items():
            out[f"flops_{name}"] = count_flops(lambda: mod(inp))
        out["flops"] = count_flops(lambda: net(x))
    elif args.worker == "compress":
        with torch.inference_mode():
            with PeakMemory(device) as mem:  # the coder's copies of the networks count, as they did when made lazily
                coder = coder_of(net, args)
                compress = lambda: coder.compress(x)  # noqa: E731
                out["time"] = median_time(compress, reps, device, args.warmup, clock)
            enc = compress()
        out["flops"] = count_flops(compress)
        y_strings, z_strings = enc["strings"]
        write_text_atomic(strings_file, json.dumps({
            "y": [s.hex() for s in y_strings], "z": [s.hex() for s in z_strings], "shape": list(enc["shape"]),
        }))
        out["bytes"] = sum(len(s) for s in y_strings + z_strings)
    elif args.worker == "decompress":
        enc = json.loads(strings_file.read_text())
        strings = [[bytes.fromhex(s) for s in enc["y"]], [bytes.fromhex(s) for s in enc["z"]]]
        with torch.inference_mode():
            with PeakMemory(device) as mem:
                coder = coder_of(net, args)
                decompress = lambda: coder.decompress(strings, enc["shape"])  # noqa: E731
                out["time"] = median_time(decompress, reps, device, args.warmup, clock)
        out["flops"] = count_flops(decompress)
    else:
        out.update(run_train(net, x, args, device))
        return out
    out["peak_bytes"] = mem.bytes
    return out


def coder_of(net: nn.Module, args: argparse.Namespace):
    """What compresses and decompresses in this measurement: a :class:`Coder` in the measured mode, or the
    authors' model itself (``--authors``: their own compress and decompress)."""
    if args.run_authors:
        from .authors import authors_model

        return authors_model(args.authors, net)
    return Coder(net, args.coding[0])


def run_train(net: nn.Module, x: torch.Tensor, args: argparse.Namespace, device: torch.device) -> dict:
    """One step of the paper's recipe, the one train.py runs (``training.step.train_step``)."""
    from training.step import Optimization, float_outputs, train_step

    batch = training_batch(x, args.batch)
    net.train()
    opt = Optimization.paper_recipe(net, lmbda=0.013)

    def forward_backward() -> None:
        opt.criterion(float_outputs(net(batch)), batch)["loss"].backward()

    with PeakMemory(device) as mem:
        t = median_time(lambda: train_step(opt, batch), args.repeats, device, args.warmup, CLOCKS[args.clock])
    flops = count_flops(forward_backward, grad=True)
    return {"flops": flops, "time": t, "peak_bytes": mem.bytes, "batch": args.batch}


# ---------------------------------------------------------------- table
def worker_argv(args: argparse.Namespace, model: str, measure: str, strings_file: str,
                mode: CodingMode = CodingMode.PUBLISHED, authors: bool = False) -> list[str]:
    argv = [sys.executable, str(ROOT / "bench.py"), "--worker", measure, "--model", model,
            "--repeats", str(args.repeats), "--clock", args.clock, "--threads", str(args.threads or 0),
            "--warmup", str(args.warmup), "--batch", str(args.batch), "--strings-file", strings_file,
            "--coding", str(mode)]
    for flag in ("quick", "cuda", "compile"):
        if getattr(args, flag):
            argv.append(f"--{flag}")
    if args.image:
        argv += ["--image", args.image]
    if args.checkpoint:
        argv += ["--checkpoint", args.checkpoint]
    if authors:
        argv += ["--authors", args.authors, "--run-authors"]
    return argv


def run_worker(argv: list[str]) -> dict:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchError(f"measurement {argv[argv.index('--worker') + 1]} failed: {msg}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def row_name(measure: str, mode: CodingMode | str) -> str:
    """``compress`` for the published function, ``compress float64/bfloat16`` etc. for the other modes,
    ``compress authors' code`` for theirs."""
    if mode == AUTHORS:
        return f"{measure} {AUTHORS}"
    return measure if mode == CodingMode.PUBLISHED or measure in ("forward", "train") else f"{measure} {mode}"


def summarise(rows: dict[str, dict]) -> dict:
    """Shares of the matmul rate and the compress/decompress overheads over the forward parts."""
    for r in rows.values():
        r["gflops_per_s"] = r["flops"] / r["time"] / 1e9
        r["share"] = r["gflops_per_s"] / r["matmul_gflops"]
    modes = {}
    published = rows.get("compress"), rows.get("decompress")
    authors = rows.get(row_name("compress", AUTHORS)), rows.get(row_name("decompress", AUTHORS))
    for mode in CodingMode.all():
        c, d = rows.get(row_name("compress", mode)), rows.get(row_name("decompress", mode))
        if not (c and d):
            continue
        f = modes[str(mode)] = {"compress_s": c["time"], "decompress_s": d["time"], "bytes": c["bytes"]}
        if all(published):
            f.update(compress_speedup=published[0]["time"] / c["time"],
                     decompress_speedup=published[1]["time"] / d["time"],
                     bytes_change=c["bytes"] / published[0]["bytes"] - 1)
        if all(authors):
            f.update(authors_compress_speedup=authors[0]["time"] / c["time"],
                     authors_decompress_speedup=authors[1]["time"] / d["time"])
    if not {"forward", "compress", "decompress"} <= rows.keys():
        return {"coding": modes} if modes else {}
    fwd = rows["forward"]
    fwd_entropy = fwd["time"] - fwd["time_g_a"] - fwd["time_h_a"] - fwd["time_g_s"]
    return {
        "compress_over_forward_parts": rows["compress"]["time"] / (fwd["time"] - fwd["time_g_s"]),
        "decompress_over_forward_parts": rows["decompress"]["time"] / (fwd["time"] - fwd["time_g_a"] - fwd["time_h_a"]),
        "forward_split_s": {"g_a": fwd["time_g_a"], "h_a": fwd["time_h_a"], "entropy_model": fwd_entropy,
                            "g_s": fwd["time_g_s"]},
        "coding": modes,
    }


def busy_notes(results: dict) -> list[str]:
    """Why the figures may be off: a busy machine (load average, a yardstick far below the run's best), shares
    above 100 % (a yardstick measured low)."""
    notes = []
    rows = [(model, name, r) for model, res in results["models"].items() for name, r in res["rows"].items()]
    loads = [r["load"] for _, _, r in rows if r.get("load") is not None]
    loads += [results["load_at_start"]] if results.get("load_at_start") is not None else []
    busy = busy_note(max(loads)) if loads else None
    if busy:
        notes.append(f"{busy} during the measurements: times are longer and shares lower than on an idle machine")
    best: dict[str, float] = {}
    for _, _, r in rows:
        best[r["matmul_dtype"]] = max(best.get(r["matmul_dtype"], 0.0), r["matmul_gflops"])
    slow = [f"{model} {name}" for model, name, r in rows if r["matmul_gflops"] < SLOW_YARDSTICK * best[r["matmul_dtype"]]]
    if slow:
        notes.append(f"the yardstick of {', '.join(slow)} was below {SLOW_YARDSTICK:.0%} of the run's best of its "
                     "arithmetic: the machine was busy meanwhile, and that row is not comparable")
    over = [f"{model} {name}" for model, name, r in rows if r["share"] > 1.0]
    if over:
        notes.append(f"share above 100 % ({', '.join(over)}): the yardstick was measured low (busy while it ran?); "
                     "that share is not a fraction of the machine's limit")
    return notes


def print_table(results: dict, header: str) -> None:
    print(header)
    print(results["image"])
    print(f"{'model':6} {'measure':27} {'GFLOP':>8} {'median s':>9} {'GFLOP/s':>8} "
          f"{'yardstick':>15} {'share':>6} {'peak MiB':>9}")
    for model, res in results["models"].items():
        for m, r in res["rows"].items():
            yardstick = f"{r['matmul_gflops']:.1f} {r['matmul_dtype']}"
            print(f"{model:6} {m:27} {r['flops'] / 1e9:8.1f} {r['time']:9.3f} {r['gflops_per_s']:8.1f} "
                  f"{yardstick:>15} {100 * r['share']:5.1f}% {r['peak_bytes'] / 2**20:9.0f}")
        s = res["summary"]
        for mode, f in s.get("coding", {}).items():
            parts = []
            if mode != str(CodingMode.PUBLISHED) and "compress_speedup" in f:
                parts.append(f"compress {f['compress_speedup']:.2f}x, decompress {f['decompress_speedup']:.2f}x as "
                             f"fast as the published {CodingMode.PUBLISHED}")
            if "authors_compress_speedup" in f:
                parts.append(f"{f['authors_compress_speedup']:.2f}x / {f['authors_decompress_speedup']:.2f}x as "
                             f"fast as the {AUTHORS}")
            if parts:
                change = f" ({100 * f['bytes_change']:+.2f} %)" if "bytes_change" in f else ""
                print(f"{model:6} {mode}: {'; '.join(parts)}; {f['bytes']} bytes{change}")
        if "forward_split_s" not in s:
            continue
        split = ", ".join(f"{k} {v:.3f}" for k, v in s["forward_split_s"].items())
        print(f"{model:6} compress / forward of its parts {s['compress_over_forward_parts']:.2f}x, "
              f"decompress / forward of its parts {s['decompress_over_forward_parts']:.2f}x; "
              f"forward split (s): {split}")
    for note in results["notes"]:
        print(f"note: {note}")


def run_bench(args: argparse.Namespace, argv: list[str] | None) -> int:
    """All measurements of ``args.measures`` for each model, each in its own process; prints the table."""
    if args.worker:
        print(json.dumps(run_measure(args)))
        return 0
    from models import preset_name

    models = [m.strip().lower() for m in args.model.split(",") if m.strip()]
    if args.checkpoint:
        models = models[:1]
    for m in models:
        try:
            preset_name(m)
        except ValueError as e:
            raise BenchError(str(e)) from None
    results = {"device": "cuda" if args.cuda else "cpu", "threads": args.threads or torch.get_num_threads(),
               "clock": args.clock,
               "torch": str(torch.__version__), "coding": [str(m) for m in args.coding], "compile": args.compile,
               "command": " ".join(["python bench.py", *(argv if argv is not None else sys.argv[1:])]),
               "image": image_line(args), "load_at_start": load_average(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            strings_file = os.path.join(tmp, f"{m}.json")
            rows = {}
            for measure in [m for m in MEASURES if m in args.measures]:
                coded = measure in ("compress", "decompress")
                runs = [(mode, False) for mode in (args.coding if coded else [CodingMode.PUBLISHED])]
                if coded and args.authors:
                    runs.append((CodingMode.PUBLISHED, True))
                for k, (mode, authors) in enumerate(runs):
                    name = row_name(measure, AUTHORS if authors else mode)
                    argv_v = worker_argv(args, m, measure, f"{strings_file}.{k}", mode, authors)
                    rows[name] = run_worker(argv_v)
                    print(f"  {m} {name}: {rows[name]['time']:.3f} s", file=sys.stderr, flush=True)
            results["models"][m] = {"rows": rows, "summary": summarise(rows)}
    results["notes"] = busy_notes(results)
    print_table(results, f"$ {results['command']}   ({results['device']}, {results['threads']} threads, "
                         f"{args.clock} clock, "
                         f"torch {results['torch']}, compile {args.compile})")
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return 0
