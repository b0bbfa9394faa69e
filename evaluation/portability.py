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
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from layers.config import KernelPolicy, apply_kernel_policy
from models.coding import Coder, CodingMode, coding_argument
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
#: The modes checked by default: the published function and the file codec's entropy arithmetic.
DEFAULT_MODES = (CodingMode.PUBLISHED, CodingMode.PORTABLE)


def kernel_policy_of(config: dict[str, Any]) -> KernelPolicy:
    """The kernel policy (``layers.config``) a configuration runs: NCHW convolutions for "nchw"."""
    return KernelPolicy(channels_last=config.get("layout", "channels-last") != "nchw")


@contextlib.contextmanager
def configuration(config: dict[str, Any]) -> Iterator[None]:
    """Run a block of code with ``config``'s process settings (threads, oneDNN); the previous ones after.

    Its kernel policy is the model's: :func:`configured` rebuilds a model (or a copy) to it.
    """
    import torch

    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    try:
        if config.get("threads"):
            torch.set_num_threads(int(config["threads"]))
        torch.backends.mkldnn.enabled = bool(config.get("mkldnn", True))
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = mkldnn


def configured(net, config: dict[str, Any]):
    """A copy of ``net`` rebuilt to ``config``'s kernel policy (``layers.config.apply_kernel_policy``)."""
    import copy

    return apply_kernel_policy(copy.deepcopy(net), kernel_policy_of(config))


def _worker_command(action: str, checkpoint: str, config: str, files: Sequence[str], out: str | None,
                    coding: CodingMode) -> list[str]:
    command = [sys.executable, "-m", "evaluation.portability", action, "--checkpoint", str(checkpoint),
               "--config", config, "--coding", str(coding), *map(str, files)]
    return command + (["--out", str(out)] if out else [])


def run_worker(action: str, checkpoint: str, config: str, files: Sequence[str], out: str | None = None,
               coding: CodingMode = CodingMode.PORTABLE, threads_env: int | None = None) -> dict[str, str]:
    """Run one worker process; file -> "ok" or the failure's one line."""
    env = dict(os.environ)
    threads = CONFIGS[config].get("threads") or threads_env
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run(_worker_command(action, checkpoint, config, files, out, coding),
                          capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ToolError(f"{action} worker ({config}) failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def encode(checkpoint: str, images: Sequence[Path], out: Path, coding: CodingMode = CodingMode.PORTABLE,
           config: str = "same") -> list[Path]:
    """Encode ``images`` into ``out`` in a worker, in ``coding``; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    result = run_worker("encode", checkpoint, config, [str(p) for p in images], str(out), coding)
    failed = {k: v for k, v in result.items() if v != "ok"}
    if failed:
        raise ToolError(f"encoding failed: {failed}")
    return [out / (Path(p).stem + ".tcm") for p in images]


def decode(checkpoint: str, files: Sequence[Path], config: str,
           coding: CodingMode = CodingMode.PORTABLE) -> dict[str, str]:
    """Decode ``files`` in a worker of ``config`` with ``coding``'s transforms (the entropy arithmetic is
    each file's): file -> "ok" or why not."""
    return run_worker("decode", checkpoint, config, [str(f) for f in files], None, coding)


def mismatch_table(checkpoint: str, images: Sequence[Path], work: Path, configs: Sequence[str] = tuple(CONFIGS),
                   modes: Sequence[CodingMode] = DEFAULT_MODES) -> dict[str, dict[str, int]]:
    """mode -> config -> files that failed to decode, for ``images`` encoded in the default configuration
    in each mode and decoded with its transforms."""
    table: dict[str, dict[str, int]] = {}
    for k, mode in enumerate(modes):
        files = encode(checkpoint, images, work / f"mode-{k}", mode)
        table[str(mode)] = {}
        for config in configs:
            results = decode(checkpoint, files, config, mode)
            table[str(mode)][config] = sum(v != "ok" for v in results.values())
    return table


# ------------------------------------------------------------------ how close decisions come to flipping
class ReplayedSymbols:
    """A stream reader (``models.entropy_model.SymbolReader``) that gives back known symbols, slice by slice."""

    def __init__(self, symbols):
        self.symbols, self.at = symbols.reshape(-1).tolist(), 0

    def decode_stream(self, indexes: list[int], *tables) -> list[int]:
        part = self.symbols[self.at : self.at + len(indexes)]
        self.at += len(indexes)
        return part


def decoder_parameters(coder: Coder, encoded: dict) -> tuple[list, list]:
    """The means and scales, slice by slice (float64, on the CPU), that a decoder of ``coder``'s mode
    computes for ``encoded`` (``compress``'s result, one image).

    A decoder that recovers the coded symbols computes exactly these: the
    y stream is read by :class:`ReplayedSymbols`, which gives back the
    encoder's symbols, so no other configuration's decoding decision
    changes what the next slices see.
    """
    import torch

    y_symbols = encoded["symbols"]["y"]  # (images, M*h*w): slice after slice
    readers = [ReplayedSymbols(row) for row in y_symbols]
    out = coder.decode_latents([readers, encoded["strings"][1]], encoded["shape"], keep_parameters=True)
    means = [m.detach().to(torch.float64).cpu().clone() for m in out["means"]]
    scales = [s.detach().to(torch.float64).cpu().clone() for s in out["scales"]]
    return means, scales


def boundary_margins(net, x, configs: Sequence[str], entropy: str = "float32") -> dict[str, Any]:
    """How far the decoder's scales move between configurations, and how close they sit to table boundaries.

    Encodes ``x`` (one image) in the default configuration with the
    ``entropy`` arithmetic, then computes the decoder's means and scales
    (:func:`decoder_parameters`) under each configuration, in this process
    (:func:`configuration`), and compares them with the default's.
    A scale picks its coding table by comparison with the 63 inner boundaries
    of the scale table; it flips when a configuration moves it across one.
    ``per_image_flips`` estimates the expected number of flips per image as
    N * P(relative distance to the nearest boundary < largest relative move),
    the probability read off the observed distances (their share below a
    small threshold, scaled linearly: the distances' density is flat there).
    """
    import torch

    mode = CodingMode(entropy, "float32")
    coder = Coder(configured(net, CONFIGS["same"]), mode)
    with configuration(CONFIGS["same"]):
        encoded = coder.compress(x)
        ref_means, ref_scales = decoder_parameters(coder, encoded)
    scales = torch.cat([s.flatten() for s in ref_scales])
    table = net.gaussian_conditional.scale_table.to(torch.float64)
    # A scale below the lower bound (the table's first entry) is clamped to it: only the raw
    # scale's distance to each inner boundary matters.
    distance = ((scales[:, None] - table[None, :-1]).abs() / table[None, :-1]).min(dim=1).values
    threshold = 1e-3
    below = int((distance < threshold).sum())
    out: dict[str, Any] = {"elements": scales.numel(), "share_within_1e-3": below / scales.numel(), "configs": {}}
    for config in configs:
        with configuration(CONFIGS[config]):
            means, cfg_scales = decoder_parameters(Coder(configured(net, CONFIGS[config]), mode), encoded)
        rel = max(((a - b).abs() / b.abs().clamp_min(1e-12)).max().item() for a, b in zip(cfg_scales, ref_scales))
        mu = max((a - b).abs().max().item() for a, b in zip(means, ref_means))
        flips = scales.numel() * (below / scales.numel()) * (rel / threshold)
        out["configs"][config] = {"max_relative_scale_move": rel, "max_mean_move": mu, "per_image_flips": flips}
    return out


# ------------------------------------------------------------------ what portability costs
def coding_cost(checkpoint: str, images: Sequence[Path], modes: Sequence[CodingMode]) -> dict[str, dict[str, float]]:
    """Mean seconds per image to encode and to decode a ``.tcm`` file in each mode, with
    ``file_codec.Codec`` in this process.

    Every image runs every mode back to back (in alternating order), so that
    the drift of a shared machine falls on all of them alike: figures from one
    call compare, figures from separate runs minutes apart do not.  One untimed
    pass over the first image warms each mode up (its coder's float64 and
    bfloat16 copies of the networks are made then).
    """
    import time

    from datasets import open_rgb
    from file_codec import Codec

    loaded = Codec.load(checkpoint)
    codecs = {mode: dataclasses.replace(loaded, mode=mode) for mode in modes}
    totals = {mode: {"encode": 0.0, "decode": 0.0} for mode in codecs}

    def run(mode: CodingMode, image) -> tuple[float, float]:
        t0 = time.perf_counter()
        data = codecs[mode].encode(image)
        t1 = time.perf_counter()
        codecs[mode].decode(data)
        return t1 - t0, time.perf_counter() - t1

    pictures = [open_rgb(f, warn_alpha=False) for f in images]
    for mode in codecs:
        run(mode, pictures[0])
    for k, image in enumerate(pictures):
        for mode in (list(codecs) if k % 2 == 0 else list(reversed(codecs))):
            enc, dec = run(mode, image)
            totals[mode]["encode"] += enc
            totals[mode]["decode"] += dec
    return {str(mode): {what: t / len(pictures) for what, t in times.items()} for mode, times in totals.items()}


def random_checkpoint(net, modes: Sequence[CodingMode]) -> dict:
    """A random-weight model's checkpoint; with an int8 mode, holding integer parameters calibrated once.

    Weights without integer parameters are calibrated by every process that
    builds their int8 coder, from float32 latents whose last bits depend on the
    machine's kernels: each configuration would get parameters of its own. A
    release file carries the encoder's, so the table checks them the same way.
    """
    from models.integer_entropy import CHECKPOINT_KEY, integer_entropy_model

    if not any(m.entropy == "int8" for m in modes):
        return net.state_dict()
    return {"state_dict": net.state_dict(), CHECKPOINT_KEY: integer_entropy_model(net).integer_parameters.values}


# ------------------------------------------------------------------ the worker process
def _worker(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.portability")
    p.add_argument("action", choices=("encode", "decode"))
    p.add_argument("files", nargs="+")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--config", choices=list(CONFIGS), default="same")
    p.add_argument("--coding", type=coding_argument, default=CodingMode.PORTABLE,
                   help="encode: the mode files are written in; decode: its transforms (the entropy is each file's)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    from datasets import open_rgb
    from file_codec import Codec
    from utils.cli import first_line
    from utils.files import write_bytes_atomic

    with configuration(CONFIGS[args.config]):  # this process's whole work
        codec = Codec.load(args.checkpoint, args.coding)
        apply_kernel_policy(codec.net, kernel_policy_of(CONFIGS[args.config]))  # before its coders are made
        results = {}
        for f in args.files:
            try:
                if args.action == "encode":
                    write_bytes_atomic(Path(args.out) / (Path(f).stem + ".tcm"),
                                       codec.encode(open_rgb(f, warn_alpha=False)))
                else:
                    codec.decode(Path(f).read_bytes())
                results[f] = "ok"
            except Exception as e:  # noqa: BLE001 - every failure is a result here
                results[f] = f"{type(e).__name__}: {first_line(e)}"
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
