"""How close TCM runs to this machine's arithmetic limit.

For TCM-S and TCM-L on one image: FLOPs (torch's flop counter, a multiply-add
counts 2), the float32 matmul rate measured in the same process just before
each measurement (best of 9), median times of forward / compress / decompress / one
training step, the share of the matmul rate each reaches, and peak memory.
Every measurement runs in its own subprocess so that peak RSS
(``ru_maxrss``) belongs to that measurement alone.  Weights are random (a
``--checkpoint`` may be given): speed does not depend on them much, but the
rANS coder's work does, a little.

    python bench.py                       # TCM-S and TCM-L on kodim01 (or a synthetic image)
    python bench.py --model s --quick     # a smoke run: 256x256, batch 2, one repeat
    python bench.py --json bench.json     # also write the table
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from utils import atomic_write, keep_freed_memory

ROOT = Path(__file__).resolve().parent
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png"
MEASURES = ("forward", "compress", "decompress", "train")
TRAIN_CROP = 256


class BenchError(Exception):
    """Bad input: reported as one line."""


# ---------------------------------------------------------------- FLOPs
# The counter hands custom formulas the shapes of the tensor arguments.
def _sdpa_cpu_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward_flops(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def flop_counter() -> FlopCounterMode:
    """torch's counter, plus the CPU flash-attention kernels it does not know.

    Without them attention would count 0 FLOPs on CPU whenever SDPA picks its
    fused kernel, so the counts would depend on the implementation.
    """
    mapping = {}
    aten = torch.ops.aten
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flops
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward_flops
    return FlopCounterMode(display=False, custom_mapping=mapping)


def count_flops(fn: Callable[[], object], grad: bool = False) -> int:
    """FLOPs of one call (under no_grad unless ``grad``: the counter's module tracker
    cannot run under inference_mode)."""
    counter = flop_counter()
    with counter, torch.set_grad_enabled(grad):
        fn()
    return counter.get_total_flops()


# ---------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: wall: elapsed time.  cpu: this process's CPU time, which with ``--threads 1``
#: is the compute time even on a machine other jobs are loading.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def run_times(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> list[float]:
    """Clock times of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = clock()
        fn()
        synchronize(device)
        times.append(clock() - t0)
    return times


def median_time(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> float:
    return statistics.median(run_times(fn, repeats, device, warmup))


def matmul_rate(device: torch.device, quick: bool) -> float:
    """float32 GFLOP/s of a large square matmul (with torch's default TF32 settings on CUDA).

    The best of several runs, not the median: the yardstick is what the
    machine can do, and a run slowed by another job would flatter the shares.
    """
    n = 8192 if device.type == "cuda" else (1024 if quick else 2048)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2 * n**3 / min(run_times(lambda: torch.mm(a, b), 3 if quick else 9, device)) / 1e9


class PeakMemory:
    """Peak memory of one measurement: ru_maxrss growth on CPU, allocator peak on CUDA."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.bytes = max(0, peak - self.base)


# ---------------------------------------------------------------- model and data
class Bf16Autocast(nn.Module):
    """Runs a transform under bfloat16 autocast and hands float32 on.

    Only for g_a, h_a and g_s: nothing that feeds mu/scale (h_mean_s, h_scale_s,
    the slice transforms), so the encoder and decoder still compute the coding
    parameters identically in float32.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.inner(x).float()


def build_model(args: argparse.Namespace, device: torch.device) -> nn.Module:
    from models import load_model, tcm

    if args.checkpoint:
        net = load_model(args.checkpoint)
    else:
        torch.manual_seed(0)
        net = tcm(args.model)
        net.update(force=True)
    net = net.to(device).eval()
    for name in ("g_a", "h_a", "g_s"):  # transforms that never feed the coding parameters
        mod = getattr(net, name)
        if args.bf16:
            mod = Bf16Autocast(mod)
        if args.compile:
            mod = torch.compile(mod, dynamic=False)
        setattr(net, name, mod)
    return net


def load_image(args: argparse.Namespace) -> torch.Tensor:
    from datasets.images import ImageReadError, open_rgb, to_tensor
    from utils import pad

    if args.image is None and not DEFAULT_IMAGE.exists():
        g = torch.Generator().manual_seed(0)  # a user's clone: no Kodak
        x = torch.rand(1, 3, 512, 768, generator=g)
    else:
        try:
            x = to_tensor(open_rgb(args.image or DEFAULT_IMAGE, warn_alpha=False))
        except ImageReadError as e:
            raise BenchError(str(e)) from None
        if x.dim() == 3:
            x = x.unsqueeze(0)
    if args.quick:
        x = x[..., :256, :256]
    return pad(x, 128)[0]


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
    global clock
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.cuda else "cpu")
    net = build_model(args, device)
    x = load_image(args).to(device)
    rate = matmul_rate(device, args.quick)
    reps = args.repeats
    out: dict = {"measure": args.worker, "matmul_gflops": rate}
    strings_file = Path(args.strings_file)

    # Timed runs come first: ru_maxrss only grows, so nothing may run before them.
    if args.worker == "forward":
        with torch.inference_mode():
            with PeakMemory(device) as mem:
                out["time"] = median_time(lambda: net(x), reps, device, args.warmup)
            y = net.g_a(x)
            y_hat = torch.round(y)
            parts = {"g_a": (net.g_a, x), "h_a": (net.h_a, y), "g_s": (net.g_s, y_hat)}
            for name, (mod, inp) in parts.items():
                out[f"time_{name}"] = median_time(lambda: mod(inp), reps, device, args.warmup)
        y, y_hat = y.clone(), y_hat.clone()  # out of inference mode, for the counter
        parts = {"g_a": (net.g_a, x), "h_a": (net.h_a, y), "g_s": (net.g_s, y_hat)}
        for name, (mod, inp) in parts.items():
            out[f"flops_{name}"] = count_flops(lambda: mod(inp))
        out["flops"] = count_flops(lambda: net(x))
    elif args.worker == "compress":
        with torch.inference_mode():
            with PeakMemory(device) as mem:
                out["time"] = median_time(lambda: net.compress(x), reps, device, args.warmup)
            enc = net.compress(x)
        out["flops"] = count_flops(lambda: net.compress(x))
        y_strings, z_strings = enc["strings"]
        strings_file.write_text(json.dumps({
            "y": [s.hex() for s in y_strings], "z": [s.hex() for s in z_strings], "shape": list(enc["shape"]),
        }))
        out["bytes"] = sum(len(s) for s in y_strings + z_strings)
    elif args.worker == "decompress":
        enc = json.loads(strings_file.read_text())
        strings = [[bytes.fromhex(s) for s in enc["y"]], [bytes.fromhex(s) for s in enc["z"]]]
        with torch.inference_mode():
            with PeakMemory(device) as mem:
                out["time"] = median_time(lambda: net.decompress(strings, enc["shape"]), reps, device, args.warmup)
        out["flops"] = count_flops(lambda: net.decompress(strings, enc["shape"]))
    else:
        out.update(run_train(net, x, args, device))
        return out
    out["peak_bytes"] = mem.bytes
    return out


def run_train(net: nn.Module, x: torch.Tensor, args: argparse.Namespace, device: torch.device) -> dict:
    """One step of the paper's recipe: RD loss, backward, clipping, Adam (main and aux)."""
    batch = training_batch(x, args.batch)
    net.train()
    params = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(params, lr=1e-4)
    aux_opt = torch.optim.Adam(aux, lr=1e-3)
    lmbda = 0.013
    pixels = batch.shape[0] * batch.shape[2] * batch.shape[3]

    def forward_backward() -> None:
        out = net(batch)
        bpp = sum(torch.log(lk).sum() for lk in out["likelihoods"].values()) / (-0.6931471805599453 * pixels)
        loss = lmbda * 255**2 * torch.mean((out["x_hat"] - batch) ** 2) + bpp
        loss.backward()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        forward_backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        net.aux_loss().backward()
        aux_opt.step()

    with PeakMemory(device) as mem:
        t = median_time(step, args.repeats, device, args.warmup)
    flops = count_flops(forward_backward, grad=True)
    return {"flops": flops, "time": t, "peak_bytes": mem.bytes, "batch": args.batch}


# ---------------------------------------------------------------- table
def worker_argv(args: argparse.Namespace, model: str, measure: str, strings_file: str) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", measure, "--model", model,
            "--repeats", str(args.repeats), "--clock", args.clock,
            "--threads", str(args.threads or 0), "--warmup", str(args.warmup), "--batch", str(args.batch), "--strings-file", strings_file]
    for flag in ("quick", "cuda", "bf16", "compile"):
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


def summarise(rows: dict[str, dict]) -> dict:
    """Shares of the matmul rate and the compress/decompress overheads over the forward parts."""
    for r in rows.values():
        r["gflops_per_s"] = r["flops"] / r["time"] / 1e9
        r["share"] = r["gflops_per_s"] / r["matmul_gflops"]
    if not {"forward", "compress", "decompress"} <= rows.keys():
        return {}
    fwd = rows["forward"]
    fwd_entropy = fwd["time"] - fwd["time_g_a"] - fwd["time_h_a"] - fwd["time_g_s"]
    return {
        "compress_over_forward_parts": rows["compress"]["time"] / (fwd["time"] - fwd["time_g_s"]),
        "decompress_over_forward_parts": rows["decompress"]["time"] / (fwd["time"] - fwd["time_g_a"] - fwd["time_h_a"]),
        "forward_split_s": {"g_a": fwd["time_g_a"], "h_a": fwd["time_h_a"], "entropy_model": fwd_entropy,
                            "g_s": fwd["time_g_s"]},
    }


def print_table(results: dict, header: str) -> None:
    print(header)
    print(f"{'model':6} {'measure':11} {'GFLOP':>8} {'median s':>9} {'GFLOP/s':>8} "
          f"{'matmul':>7} {'share':>6} {'peak MiB':>9}")
    for model, res in results["models"].items():
        for m, r in res["rows"].items():
            print(f"{model:6} {m:11} {r['flops'] / 1e9:8.1f} {r['time']:9.3f} {r['gflops_per_s']:8.1f} "
                  f"{r['matmul_gflops']:7.1f} {100 * r['share']:5.1f}% {r['peak_bytes'] / 2**20:9.0f}")
        s = res["summary"]
        if not s:
            continue
        split = ", ".join(f"{k} {v:.3f}" for k, v in s["forward_split_s"].items())
        print(f"{model:6} compress / forward of its parts {s['compress_over_forward_parts']:.2f}x, "
              f"decompress / forward of its parts {s['decompress_over_forward_parts']:.2f}x; "
              f"forward split (s): {split}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="s,l", help="comma-separated presets: s, m, l (default s,l)")
    p.add_argument("--image", help="image to code (default: Kodak kodim01, or a synthetic 768x512)")
    p.add_argument("--checkpoint", help="weights to load instead of random ones")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    p.add_argument("--batch", type=int, default=8, help="training batch of 256x256 crops")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall time, or process CPU time (use with --threads 1 on a loaded machine)")
    p.add_argument("--quick", action="store_true", help="256x256 crop, batch 2, one repeat")
    p.add_argument("--cuda", action="store_true", help="measure on the GPU")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for g_a, h_a, g_s")
    p.add_argument("--compile", action="store_true", help="torch.compile g_a, h_a, g_s")
    p.add_argument("--measures", default=",".join(MEASURES),
                   help=f"comma-separated subset of {','.join(MEASURES)} (decompress needs compress)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--worker", choices=MEASURES, help=argparse.SUPPRESS)
    p.add_argument("--strings-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.batch = 1, 0, min(args.batch, 2)
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
    if args.cuda and args.clock == "cpu":
        p.error("--clock cpu does not time GPU work: use the wall clock with --cuda")
    if args.cuda and not torch.cuda.is_available():
        p.error("--cuda: no CUDA device is available")
    if args.image and not Path(args.image).is_file():
        p.error(f"--image {args.image}: no such file")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        p.error(f"--checkpoint {args.checkpoint}: no such file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep_freed_memory()  # large activations reuse freed memory instead of faulting pages in
    try:
        if args.worker:
            print(json.dumps(run_measure(args)))
            return 0
        from models import PRESETS

        names = {k[0]: k for k in PRESETS}
        models = [m.strip().lower() for m in args.model.split(",") if m.strip()]
        if args.checkpoint:
            models = models[:1]
        for m in models:
            if m not in names and m not in PRESETS:
                raise BenchError(f"unknown model {m!r}: choose from s, m, l")
        results = {"device": "cuda" if args.cuda else "cpu", "threads": args.threads or torch.get_num_threads(),
                   "clock": args.clock,
                   "torch": torch.__version__, "bf16": args.bf16, "compile": args.compile,
                   "command": " ".join(["python bench.py", *(argv if argv is not None else sys.argv[1:])]),
                   "models": {}}
        with tempfile.TemporaryDirectory() as tmp:
            for m in models:
                strings_file = os.path.join(tmp, f"{m}.json")
                rows = {}
                for measure in [m for m in MEASURES if m in args.measures]:
                    rows[measure] = run_worker(worker_argv(args, m, measure, strings_file))
                    print(f"  {m} {measure}: {rows[measure]['time']:.3f} s", file=sys.stderr, flush=True)
                results["models"][m] = {"rows": rows, "summary": summarise(rows)}
        print_table(results, f"$ {results['command']}   ({results['device']}, {results['threads']} threads, "
                             f"{args.clock} clock, "
                             f"torch {results['torch']}, bf16 {args.bf16}, compile {args.compile})")
        if args.json:
            with atomic_write(args.json) as tmp, open(tmp, "w") as f:
                json.dump(results, f, indent=2)
    except BenchError as e:
        print(f"bench.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
