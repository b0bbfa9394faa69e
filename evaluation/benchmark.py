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

from .speed import CLOCKS, PeakMemory, count_flops, matmul_rate, median_time

DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png"
MEASURES = ("forward", "compress", "decompress", "train")
TRAIN_CROP = 256


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
    from datasets.images import ImageReadError, open_rgb, to_tensor

    if args.image is None and not DEFAULT_IMAGE.exists():
        g = torch.Generator().manual_seed(0)  # a user's clone: no Kodak
        x = torch.rand(1, 3, 512, 768, generator=g)
    else:
        try:
            x = to_tensor(open_rgb(args.image or DEFAULT_IMAGE, warn_alpha=False))
        except ImageReadError as e:
            raise BenchError(str(e)) from None
    if args.quick:
        x = x[..., :256, :256]
    return pad(x)[0]


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
    net = build_model(args, device)
    x = load_image(args).to(device)
    rate = matmul_rate(device, args.quick, clock)
    reps = args.repeats
    out: dict = {"measure": args.worker, "matmul_gflops": rate}
    if args.worker in ("compress", "decompress"):
        out["coding"] = str(args.coding[0])
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
                coder = Coder(net, args.coding[0])
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
                coder = Coder(net, args.coding[0])
                decompress = lambda: coder.decompress(strings, enc["shape"])  # noqa: E731
                out["time"] = median_time(decompress, reps, device, args.warmup, clock)
        out["flops"] = count_flops(decompress)
    else:
        out.update(run_train(net, x, args, device))
        return out
    out["peak_bytes"] = mem.bytes
    return out


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
                mode: CodingMode = CodingMode.PUBLISHED) -> list[str]:
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
    return argv


def run_worker(argv: list[str]) -> dict:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchError(f"measurement {argv[argv.index('--worker') + 1]} failed: {msg}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def row_name(measure: str, mode: CodingMode) -> str:
    """``compress`` for the published function, ``compress float64/bfloat16`` etc. for the other modes."""
    return measure if mode == CodingMode.PUBLISHED or measure in ("forward", "train") else f"{measure} {mode}"


def summarise(rows: dict[str, dict]) -> dict:
    """Shares of the matmul rate and the compress/decompress overheads over the forward parts."""
    for r in rows.values():
        r["gflops_per_s"] = r["flops"] / r["time"] / 1e9
        r["share"] = r["gflops_per_s"] / r["matmul_gflops"]
    modes = {}
    for mode in CodingMode.all():
        c, d = rows.get(row_name("compress", mode)), rows.get(row_name("decompress", mode))
        if c and d and "compress" in rows and "decompress" in rows:
            modes[str(mode)] = {"compress_s": c["time"], "decompress_s": d["time"],
                                "compress_speedup": rows["compress"]["time"] / c["time"],
                                "decompress_speedup": rows["decompress"]["time"] / d["time"]}
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


def print_table(results: dict, header: str) -> None:
    print(header)
    print(f"{'model':6} {'measure':27} {'GFLOP':>8} {'median s':>9} {'GFLOP/s':>8} "
          f"{'matmul':>7} {'share':>6} {'peak MiB':>9}")
    for model, res in results["models"].items():
        for m, r in res["rows"].items():
            print(f"{model:6} {m:27} {r['flops'] / 1e9:8.1f} {r['time']:9.3f} {r['gflops_per_s']:8.1f} "
                  f"{r['matmul_gflops']:7.1f} {100 * r['share']:5.1f}% {r['peak_bytes'] / 2**20:9.0f}")
        s = res["summary"]
        for mode, f in s.get("coding", {}).items():
            if mode != str(CodingMode.PUBLISHED):
                print(f"{model:6} {mode}: compress {f['compress_speedup']:.2f}x, decompress "
                      f"{f['decompress_speedup']:.2f}x as fast as the published {CodingMode.PUBLISHED}")
        if "forward_split_s" not in s:
            continue
        split = ", ".join(f"{k} {v:.3f}" for k, v in s["forward_split_s"].items())
        print(f"{model:6} compress / forward of its parts {s['compress_over_forward_parts']:.2f}x, "
              f"decompress / forward of its parts {s['decompress_over_forward_parts']:.2f}x; "
              f"forward split (s): {split}")


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
               "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            strings_file = os.path.join(tmp, f"{m}.json")
            rows = {}
            for measure in [m for m in MEASURES if m in args.measures]:
                for k, mode in enumerate(args.coding if measure in ("compress", "decompress")
                                         else [CodingMode.PUBLISHED]):
                    name = row_name(measure, mode)
                    argv_v = worker_argv(args, m, measure, f"{strings_file}.{k}", mode)
                    rows[name] = run_worker(argv_v)
                    print(f"  {m} {name}: {rows[name]['time']:.3f} s", file=sys.stderr, flush=True)
            results["models"][m] = {"rows": rows, "summary": summarise(rows)}
    print_table(results, f"$ {results['command']}   ({results['device']}, {results['threads']} threads, "
                         f"{args.clock} clock, "
                         f"torch {results['torch']}, compile {args.compile})")
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return 0
