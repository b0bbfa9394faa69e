"""Do files decode under another configuration?  Encode in one process, decode in others.

A configuration is what changes a float's last bits without changing the
model: the number of threads, oneDNN on or off (torch's native kernels sum in
another order), channels-last or NCHW convolutions, or just another process.
Each configuration decodes in its own subprocess (``python -m
evaluation.portability worker …``), so that nothing carries over; a decode
counts as a mismatch when the latent checksum (or anything else) fails.
``portability.py`` prints the table; the tests run the same workers on a few
small images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from utils import ROOT
from utils.cli import ToolError

#: name -> settings of the decoding process (threads 0: torch's default).
CONFIGS: dict[str, dict[str, Any]] = {
    "same": {},  # the encoder's configuration, in another process
    "1-thread": {"threads": 1},
    "onednn-off": {"mkldnn": False},
    "nchw": {"layout": "nchw"},
    "1-thread-onednn-off-nchw": {"threads": 1, "mkldnn": False, "layout": "nchw"},
}
PATHS = ("float32", "portable")


def apply_config(config: dict[str, Any]) -> None:
    import torch

    from models.tcm import set_inference_layout

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    torch.backends.mkldnn.enabled = bool(config.get("mkldnn", True))
    set_inference_layout(config.get("layout", "channels-last") != "nchw")


def _worker_command(action: str, checkpoint: str, config: str, files: Sequence[str], out: str | None,
                    precision: str, path: str) -> list[str]:
    command = [sys.executable, "-m", "evaluation.portability", action, "--checkpoint", str(checkpoint),
               "--config", config, "--precision", precision, "--path", path, *map(str, files)]
    return command + (["--out", str(out)] if out else [])


def run_worker(action: str, checkpoint: str, config: str, files: Sequence[str], out: str | None = None,
               precision: str = "fp32", path: str = "portable", threads_env: int | None = None) -> dict[str, str]:
    """Run one worker process; file -> "ok" or the failure's one line."""
    env = dict(os.environ)
    threads = CONFIGS[config].get("threads") or threads_env
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run(_worker_command(action, checkpoint, config, files, out, precision, path),
                          capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ToolError(f"{action} worker ({config}) failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def encode(checkpoint: str, images: Sequence[Path], out: Path, precision: str = "fp32", path: str = "portable",
           config: str = "same") -> list[Path]:
    """Encode ``images`` into ``out`` in a worker; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    result = run_worker("encode", checkpoint, config, [str(p) for p in images], str(out), precision, path)
    failed = {k: v for k, v in result.items() if v != "ok"}
    if failed:
        raise ToolError(f"encoding failed: {failed}")
    return [out / (Path(p).stem + ".tcm") for p in images]


def decode(checkpoint: str, files: Sequence[Path], config: str, precision: str = "fp32") -> dict[str, str]:
    """Decode ``files`` in a worker of ``config``: file -> "ok" or why not."""
    return run_worker("decode", checkpoint, config, [str(f) for f in files], None, precision)


def mismatch_table(checkpoint: str, images: Sequence[Path], work: Path, configs: Sequence[str] = tuple(CONFIGS),
                   precision: str = "fp32", paths: Sequence[str] = PATHS) -> dict[str, dict[str, int]]:
    """path -> config -> files that failed to decode, for ``images`` encoded in the default configuration."""
    table: dict[str, dict[str, int]] = {}
    for path in paths:
        files = encode(checkpoint, images, work / path, precision, path)
        table[path] = {}
        for config in configs:
            results = decode(checkpoint, files, config, precision)
            table[path][config] = sum(v != "ok" for v in results.values())
    return table


# ------------------------------------------------------------------ how close decisions come to flipping
def _decoder_parameters(net, strings: list, shape, portable: bool) -> tuple[list, list]:
    """The means and scales a decoder computes for these strings, slice by slice."""
    import torch

    gc = net.gaussian_conditional
    means, scales = [], []
    build_indexes, dequantize = gc.build_indexes, gc.dequantize

    def record_scales(scale):
        scales.append(scale.detach().to(torch.float64).cpu().clone())
        return build_indexes(scale)

    def record_means(q, mu, *a, **kw):
        means.append(mu.detach().to(torch.float64).cpu().clone())
        return dequantize(q, mu, *a, **kw)

    gc.build_indexes, gc.dequantize = record_scales, record_means
    try:
        net.decompress(strings, shape, portable=portable)
    finally:
        del gc.build_indexes, gc.dequantize
    return means, scales


def boundary_margins(net, x, configs: Sequence[str], portable: bool) -> dict[str, Any]:
    """How far the decoder's scales move between configurations, and how close they sit to table boundaries.

    Decodes the same strings under each configuration (in this process) and
    compares the means and scales with those of the default configuration.
    A scale picks its coding table by comparison with the 63 inner boundaries
    of the scale table; it flips when a configuration moves it across one.
    ``per_image_flips`` estimates the expected number of flips per image as
    N * P(relative distance to the nearest boundary < largest relative move),
    the probability read off the observed distances (their share below a
    small threshold, scaled linearly: the distances' density is flat there).
    """
    import torch

    apply_config({})
    enc = net.compress(x, portable=portable)
    ref_means, ref_scales = _decoder_parameters(net, enc["strings"], enc["shape"], portable)
    scales = torch.cat([s.flatten() for s in ref_scales])
    table = net.gaussian_conditional.scale_table.to(torch.float64)
    # A scale below the lower bound (the table's first entry) is clamped to it: only the raw
    # scale's distance to each inner boundary matters.
    distance = ((scales[:, None] - table[None, :-1]).abs() / table[None, :-1]).min(dim=1).values
    threshold = 1e-3
    below = int((distance < threshold).sum())
    out: dict[str, Any] = {"elements": scales.numel(), "share_within_1e-3": below / scales.numel(), "configs": {}}
    for config in configs:
        apply_config(CONFIGS[config])
        try:
            means, cfg_scales = _decoder_parameters(net, enc["strings"], enc["shape"], portable)
        finally:
            apply_config({"threads": torch.get_num_threads()})
        rel = max(((a - b).abs() / b.abs().clamp_min(1e-12)).max().item() for a, b in zip(cfg_scales, ref_scales))
        mu = max((a - b).abs().max().item() for a, b in zip(means, ref_means))
        flips = scales.numel() * (below / scales.numel()) * (rel / threshold)
        out["configs"][config] = {"max_relative_scale_move": rel, "max_mean_move": mu, "per_image_flips": flips}
    return out


# ------------------------------------------------------------------ what portability costs
#: Coding variants of the cost measure: (entropy path, transforms' precision).
COST_VARIANTS: dict[str, tuple[str, str]] = {
    "float32": ("float32", "fp32"), "portable": ("portable", "fp32"),
    "float32-bf16": ("float32", "bf16"), "portable-bf16": ("portable", "bf16"),
}


def coding_cost(checkpoint: str, images: Sequence[Path], variants: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean seconds per image to encode and to decode a ``.tcm`` file, per variant of
    :data:`COST_VARIANTS`, with ``file_codec.Codec`` in this process.

    Every image runs every variant back to back (in alternating order), so that
    the drift of a shared machine falls on all of them alike: figures from one
    call compare, figures from separate runs minutes apart do not.  One untimed
    pass over the first image warms each variant up (the float64 and bfloat16
    copies of the networks are made then).
    """
    import time

    from datasets import open_rgb
    from file_codec import Codec

    codec = Codec.load(checkpoint)
    totals = {v: {"encode": 0.0, "decode": 0.0} for v in variants}

    def run(variant: str, image) -> tuple[float, float]:
        path, codec.precision = COST_VARIANTS[variant]
        codec.portable = path == "portable"
        t0 = time.perf_counter()
        data = codec.encode(image)
        t1 = time.perf_counter()
        codec.decode(data)
        return t1 - t0, time.perf_counter() - t1

    pictures = [open_rgb(f, warn_alpha=False) for f in images]
    for v in variants:
        run(v, pictures[0])
    for k, image in enumerate(pictures):
        for v in (variants if k % 2 == 0 else list(reversed(variants))):
            enc, dec = run(v, image)
            totals[v]["encode"] += enc
            totals[v]["decode"] += dec
    return {v: {what: t / len(pictures) for what, t in times.items()} for v, times in totals.items()}


# ------------------------------------------------------------------ the worker process
def _worker(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.portability")
    p.add_argument("action", choices=("encode", "decode"))
    p.add_argument("files", nargs="+")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--config", choices=list(CONFIGS), default="same")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--path", choices=PATHS, default="portable")
    p.add_argument("--out")
    args = p.parse_args(argv)
    apply_config(CONFIGS[args.config])
    from datasets import open_rgb
    from file_codec import Codec
    from utils.cli import first_line
    from utils.files import write_bytes_atomic

    codec = Codec.load(args.checkpoint, precision=args.precision)
    codec.portable = args.path == "portable"
    results = {}
    for f in args.files:
        try:
            if args.action == "encode":
                write_bytes_atomic(Path(args.out) / (Path(f).stem + ".tcm"), codec.encode(open_rgb(f, warn_alpha=False)))
            else:
                codec.decode(Path(f).read_bytes())
            results[f] = "ok"
        except Exception as e:  # noqa: BLE001 - every failure is a result here
            results[f] = f"{type(e).__name__}: {first_line(e)}"
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
