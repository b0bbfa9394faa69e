"""Train TCM with the paper's recipe; one run per lambda, resumable to the bit on CPU.

    python train.py -d DATASET --cuda --N 128 --lambda 0.05 --epochs 50 --lr_epoch 45 48 \
        --save_path DIR --save
    python train.py -d DATASET --lambda 0.0025 0.0035 0.0067 0.013 0.025 0.05 --save_path DIR
    python train.py -d DATASET --checkpoint DIR/mse_lambda_0.05/checkpoint_latest.pth.tar --save_path DIR
    python train.py -d DATASET --pretrained published.pth.tar --lambda 0.013 --save_path DIR
    torchrun --nproc_per_node 4 train.py -d DATASET --cuda ...

Each lambda trains into ``SAVE_PATH/<type>_lambda_<lambda>/`` holding
``checkpoint_latest.pth.tar``, ``checkpoint_best.pth.tar`` (lowest test
loss), ``checkpoint_epoch<E>.pth.tar`` every ``--save-every`` epochs,
``metrics.jsonl`` (one line per epoch) and the TensorBoard log.  Every
checkpoint loads with ``torch.load(..., weights_only=True)`` and with
``models.load_model``.
"""

from __future__ import annotations

import warnings

# CompressAI's import uses torch.jit.script, which this torch deprecates loudly.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn as nn
from compressai.losses import RateDistortionLoss
from compressai.optimizers import net_aux_optimizer
from torch.utils.data import DataLoader, DistributedSampler, Subset

from datasets import DatasetError, PatchDataset, find_splits, seed_worker
from models import PAD_MULTIPLE, TCM, CheckpointError, infer_config, model_from_state_dict, read_checkpoint
from models.checkpoint import extract_state_dict
from utils import atomic_write, keep_freed_memory

#: The six MSE lambdas of the paper.
PAPER_MSE_LAMBDAS = (0.0025, 0.0035, 0.0067, 0.013, 0.025, 0.05)
DEFAULT_LAMBDA = 0.013
#: TCM() constructor defaults (the published TCM-Large); CLI options override them.
MODEL_DEFAULTS: dict[str, Any] = dict(
    N=128, M=320, num_slices=5, max_support_slices=5, hyper_channels=192, atten_dim=128,
    entropy_hidden=[224, 128],
)
LATEST, BEST = "checkpoint_latest.pth.tar", "checkpoint_best.pth.tar"


class TrainError(Exception):
    """Bad options, data or checkpoint: reported as one line, exit status 2."""


class Diverged(Exception):
    """A non-finite loss: the run stops, its last good checkpoint is kept."""


# --------------------------------------------------------------------------- options
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train TCM (Liu, Sun, Katto, CVPR 2023).")
    a = p.add_argument
    a("-d", "--dataset", required=True, help="folder with train/ and test/, or a plain folder of images")
    a("-e", "--epochs", type=int, default=50)
    a("-lr", "--learning-rate", type=float, default=1e-4)
    a("-n", "--num-workers", type=int, default=min(2, os.cpu_count() or 1), help="data workers per process")
    a("--lambda", dest="lmbda", type=float, nargs="+", default=None,
      help=f"one or more lambdas, one run each (default {DEFAULT_LAMBDA}, or the checkpoint's)")
    a("--type", dest="metric", choices=("mse", "ms-ssim"), default="mse", help="distortion of the loss")
    a("--batch-size", type=int, default=8, help="batch over all processes")
    a("--test-batch-size", type=int, default=8)
    a("--aux-learning-rate", type=float, default=1e-3)
    a("--patch-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
      help="random training crops and centre test crops; multiples of 128")
    a("--cuda", action="store_true", help="train on CUDA (device LOCAL_RANK under torchrun)")
    a("--amp", action="store_true", help="mixed precision on CUDA (entropy models stay float32)")
    a("--save", action=argparse.BooleanOptionalAction, default=True, help="write checkpoints (--no-save: don't)")
    a("--save_path", "--save-path", dest="save_path", default=None,
      help="parent folder of the run folders (default: runs, or the resumed checkpoint's parent)")
    a("--save-every", type=int, default=5, help="keep checkpoint_epoch<E> every this many epochs (0: never)")
    a("--seed", type=int, default=0)
    a("--clip_max_norm", "--clip-max-norm", dest="clip_max_norm", type=float, default=1.0,
      help="gradient clipping norm (0: off)")
    a("--lr_epoch", "--lr-epoch", dest="lr_epoch", type=int, nargs="+", default=[45, 48],
      help="epochs where the learning rate is divided by 10")
    a("--checkpoint", default=None, help="resume this run: weights, optimizers, scheduler, epoch, RNG")
    a("--pretrained", default=None, help="start a new run from these weights only (fine-tuning)")
    a("--resume", action="store_true", help="resume each run of the sweep whose folder has a latest checkpoint")
    a("--steps-per-epoch", type=int, default=0, help="cap on training batches per epoch (0: whole set)")
    a("--max-test-images", type=int, default=0, help="cap on test images per epoch (0: all)")
    a("--test-fraction", type=float, default=0.1, help="held-out part of a plain image folder")
    a("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("model shape (default: the published TCM-Large; N=64 is TCM-S)")
    g.add_argument("--N", type=int, default=None, help="128")
    g.add_argument("--M", type=int, default=None, help="320")
    g.add_argument("--num-slices", type=int, default=None, help="5")
    g.add_argument("--max-support-slices", type=int, default=None, help="5")
    g.add_argument("--hyper-channels", type=int, default=None, help="192")
    g.add_argument("--atten-dim", type=int, default=None, help="128")
    g.add_argument("--entropy-hidden", type=int, nargs=2, default=None, metavar=("A", "B"), help="224 128")
    return p


def shape_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Model-shape options given on the command line."""
    out = {k: getattr(args, k) for k in MODEL_DEFAULTS if getattr(args, k) is not None}
    if "entropy_hidden" in out:
        out["entropy_hidden"] = list(out["entropy_hidden"])
    return out


def check_args(args: argparse.Namespace) -> None:
    h, w = args.patch_size
    if h <= 0 or w <= 0 or h % PAD_MULTIPLE or w % PAD_MULTIPLE:
        raise TrainError(f"--patch-size {h} {w}: sides must be positive multiples of {PAD_MULTIPLE}")
    if args.metric == "ms-ssim" and min(h, w) <= 160:
        raise TrainError("--type ms-ssim needs patches larger than 160 pixels (5 MS-SSIM scales)")
    for name in ("epochs", "batch_size", "test_batch_size"):
        if getattr(args, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("num_workers", "steps_per_epoch", "max_test_images", "save_every"):
        if getattr(args, name) < 0:
            raise TrainError(f"--{name.replace('_', '-')} must not be negative")
    if args.lmbda is not None and any(not (lam > 0 and math.isfinite(lam)) for lam in args.lmbda):
        raise TrainError("--lambda values must be positive")
    if args.lmbda is not None and len(set(args.lmbda)) != len(args.lmbda):
        raise TrainError("--lambda lists a value twice")
    if args.checkpoint and args.pretrained:
        raise TrainError("--checkpoint resumes a run and --pretrained starts one: give only one")
    if args.checkpoint and args.lmbda is not None and len(args.lmbda) > 1:
        raise TrainError("--checkpoint resumes one run: give at most one --lambda (or use --resume for a sweep)")
    if args.amp and not args.cuda:
        raise TrainError("--amp needs --cuda")
    if args.cuda and not torch.cuda.is_available():
        raise TrainError("--cuda given but CUDA is not available")
    shape = {**MODEL_DEFAULTS, **shape_overrides(args)}
    if shape["N"] % 32 or shape["N"] <= 0:
        raise TrainError(f"--N {shape['N']}: must be a positive multiple of 32 (attention head size)")
    if shape["M"] <= 0 or shape["num_slices"] <= 0 or shape["M"] % shape["num_slices"]:
        raise TrainError(f"--M {shape['M']} must be a positive multiple of --num-slices {shape['num_slices']}")
    if shape["atten_dim"] <= 0 or shape["atten_dim"] % 16:
        raise TrainError(f"--atten-dim {shape['atten_dim']}: must be a positive multiple of 16")


def plain_args(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The options as str/int/float/bool/None/list only (loadable with weights_only=True)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        return str(v)

    return {k: plain(v) for k, v in {**vars(args), **extra}.items()}


# --------------------------------------------------------------------------- processes
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


def setup_processes(args: argparse.Namespace) -> Dist:
    """One process, or one of ``torchrun``'s (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cpu")
    if args.cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1:
        torch_dist.init_process_group("nccl" if args.cuda else "gloo")
        if not args.cuda:  # share the cores among the local processes
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return Dist(rank, world, local_rank, device)


def all_sum(d: Dist, values: list[float]) -> list[float]:
    if not d.on:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    torch_dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- random state
def rng_state() -> dict[str, Any]:
    """This process's random generators, as tensors, ints and lists."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [py[0], list(py[1]), py[2]],
    }


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --------------------------------------------------------------------------- files
def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves a broken ``path``."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def atomic_copy(src: Path, dst: Path) -> None:
    with atomic_write(dst) as tmp:
        shutil.copyfile(src, tmp)


def atomic_write_text(text: str, path: Path) -> None:
    with atomic_write(path) as tmp:
        Path(tmp).write_text(text)


def run_name(metric: str, lmbda: float) -> str:
    return f"{metric}_lambda_{lmbda:g}"


# --------------------------------------------------------------------------- one run
@dataclass
class Plan:
    """What one run of the sweep starts from."""

    lmbda: float
    run_dir: Path
    resume: dict | None = None  # a training checkpoint to continue
    weights: dict | None = None  # a state_dict to start from (--pretrained)


class Metrics:
    """Sums over images of fixed figures, averaged over all processes by :meth:`means`.

    The keys are fixed up front: a process that saw no image (a small test
    shard) still takes part in the reduction with zeros.
    """

    def __init__(self, keys: Sequence[str]):
        self.n = 0.0
        self.sums = {k: 0.0 for k in keys}

    def add(self, batch: int, **values: float) -> None:
        self.n += batch
        for k in self.sums:
            self.sums[k] += values[k] * batch

    def means(self, d: Dist) -> dict[str, float]:
        total = all_sum(d, [self.n, *self.sums.values()])
        return {k: v / max(total[0], 1.0) for k, v in zip(self.sums, total[1:])}


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def keep_entropy_models_fp32(net: TCM) -> None:
    """Under autocast, run the entropy models in float32: likelihoods near 0 or 1 underflow in half."""
    for module in (net.entropy_bottleneck, net.gaussian_conditional):
        forward = module.forward

        def fp32_forward(*a, _forward=forward, **kw):
            with torch.autocast("cuda", enabled=False):
                return _forward(*(x.float() if torch.is_tensor(x) and x.is_floating_point() else x for x in a), **kw)

        module.forward = fp32_forward


class Trainer:
    """One lambda: model, optimizers, data, logs and checkpoints."""

    def __init__(self, args: argparse.Namespace, plan: Plan, d: Dist, train_paths: list, test_paths: list):
        self.args, self.plan, self.d = args, plan, d
        self.lmbda, self.run_dir = plan.lmbda, plan.run_dir
        self.name = plan.run_dir.name
        seed_all(args.seed)
        if plan.resume is not None:
            sd = extract_state_dict(plan.resume)
        elif plan.weights is not None:
            sd = plan.weights
        else:
            sd = None
        if sd is not None:
            self.net = model_from_state_dict(sd)
        else:
            try:
                self.net = TCM(**{**MODEL_DEFAULTS, **shape_overrides(args)})
            except ValueError as e:
                raise TrainError(f"cannot build the model: {e}") from None
        self.config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in infer_config(self.net.state_dict()).items()}
        self.net.to(d.device)
        if args.amp:
            keep_entropy_models_fp32(self.net)
        self.model: nn.Module = self.net
        if d.on:
            self.model = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[d.local_rank] if args.cuda else None
            )
        opts = net_aux_optimizer(self.net, {"net": {"type": "Adam", "lr": args.learning_rate},
                                            "aux": {"type": "Adam", "lr": args.aux_learning_rate}})
        self.optimizer, self.aux_optimizer = opts["net"], opts["aux"]
        self.main_params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.aux_params = [p for g in self.aux_optimizer.param_groups for p in g["params"]]
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=args.lr_epoch, gamma=0.1)
        self.scaler = torch.amp.GradScaler("cuda", enabled=args.amp)
        self.criterion = RateDistortionLoss(lmbda=self.lmbda, metric=args.metric)

        self.train_set = PatchDataset(train_paths, args.patch_size, train=True, seed=args.seed)
        tests = test_paths[: args.max_test_images] if args.max_test_images else test_paths
        self.test_set = PatchDataset(tests, args.patch_size, train=False, seed=args.seed)

        self.start_epoch, self.global_step = 0, 0
        self.best_loss: float = math.inf
        self.best: dict[str, float] = {}
        self.history: list[dict] = []
        if d.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.run_dir.glob(".*.tmp-*"):  # left by a run killed while saving
                stale.unlink(missing_ok=True)
        if plan.resume is not None:
            self._restore(plan.resume)
        elif d.rank:  # distinct quantisation noise per process; weights come from rank 0
            seed_all(args.seed + 7919 * d.rank)
        self.writer = None
        if d.main:
            from torch.utils.tensorboard import SummaryWriter

            # Events a killed run logged after its last checkpoint are dropped on resume.
            self.writer = SummaryWriter(str(self.run_dir), purge_step=self.global_step + 1 if self.global_step else None)

    # ------------------------------------------------------------- checkpoints
    def _restore(self, ck: dict) -> None:
        try:
            self.optimizer.load_state_dict(ck["optimizer"])
            self.aux_optimizer.load_state_dict(ck["aux_optimizer"])
            self.scheduler.load_state_dict(ck["lr_scheduler"])
            if ck.get("grad_scaler"):
                self.scaler.load_state_dict(ck["grad_scaler"])
            self.start_epoch = int(ck["epoch"]) + 1
            # The published script's checkpoints lack these two.
            self.global_step = int(ck.get("global_step", 0))
            self.best_loss = float(ck.get("best_loss", ck.get("loss", math.inf)))
            self.best = dict(ck.get("best", {}))
            self.history = list(ck.get("history", []))
        except (KeyError, ValueError, TypeError) as e:
            raise TrainError(f"the checkpoint's training state does not fit this run: {e}") from None
        states = ck.get("rng", [])
        if len(states) == self.d.world:
            set_rng_state(states[self.d.rank])
        else:
            seed_all(self.args.seed + 7919 * self.d.rank + self.start_epoch)

    def _gather_rng(self) -> list[dict]:
        mine = rng_state()
        if not self.d.on:
            return [mine]
        states: list = [None] * self.d.world
        torch_dist.all_gather_object(states, mine)
        return states

    def save(self, epoch: int, test: dict[str, float], is_best: bool) -> None:
        rng = self._gather_rng()  # collective: every process takes part
        if not self.d.main:
            return
        if self.args.save:
            ck = {
                "epoch": epoch,
                "global_step": self.global_step,
                "state_dict": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "aux_optimizer": self.aux_optimizer.state_dict(),
                "lr_scheduler": self.scheduler.state_dict(),
                "grad_scaler": self.scaler.state_dict() if self.args.amp else {},
                "loss": test["loss"],
                "best_loss": self.best_loss,
                "best": self.best,
                "history": self.history,
                "lambda": self.lmbda,
                "metric": self.args.metric,
                "model_config": self.config,
                "args": plain_args(self.args, lmbda=self.lmbda),
                "rng": rng,
            }
            latest = self.run_dir / LATEST
            atomic_save(ck, latest)
            if is_best:
                atomic_copy(latest, self.run_dir / BEST)
            if self.args.save_every and (epoch + 1) % self.args.save_every == 0:
                atomic_copy(latest, self.run_dir / f"checkpoint_epoch{epoch:03d}.pth.tar")
        atomic_write_text("".join(json.dumps(h) + "\n" for h in self.history), self.run_dir / "metrics.jsonl")

    # ------------------------------------------------------------- epochs
    def _loader(self, dataset, batch: int, sampler, epoch: int, drop_last: bool) -> DataLoader:
        g = torch.Generator()
        g.manual_seed(self.args.seed * 100003 + epoch)
        return DataLoader(
            dataset, batch_size=batch, sampler=sampler, num_workers=self.args.num_workers,
            worker_init_fn=seed_worker, generator=g, drop_last=drop_last,
            pin_memory=self.args.cuda,
        )

    def _keys(self, *extra: str) -> list[str]:
        quality = ["mse", "psnr"] if self.args.metric == "mse" else ["ms_ssim"]
        return ["loss", "bpp", *quality, *extra]

    def _distortion(self, out: dict) -> dict[str, float]:
        if self.args.metric == "mse":
            mse = out["mse_loss"].item()
            return {"mse": mse, "psnr": psnr(mse)}
        return {"ms_ssim": out["ms_ssim_loss"].item()}

    def _check_finite(self, value: float, epoch: int, step: int, where: str) -> None:
        bad = all_sum(self.d, [0.0 if math.isfinite(value) else 1.0])[0]
        if bad:
            raise Diverged(f"{self.name}: {where} loss is not finite ({value}) at epoch {epoch} step {step}")

    def step(self, x: torch.Tensor, epoch: int = 0, index: int = 0) -> dict[str, float]:
        """One optimisation step of both optimizers on batch ``x``; returns its figures."""
        args, d = self.args, self.d
        self.optimizer.zero_grad(set_to_none=True)
        self.aux_optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=args.amp):
            out = self.model(x)
        out = {"x_hat": out["x_hat"].float(), "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}
        losses = self.criterion(out, x)
        loss = losses["loss"].item()
        self._check_finite(loss, epoch, index, "training")
        self.scaler.scale(losses["loss"]).backward()
        if args.clip_max_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.main_params, args.clip_max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

        # The auxiliary loss fits the bottleneck's quantiles; DDP does not see this
        # backward, so its gradients are averaged here.
        aux_loss = self.net.aux_loss()
        aux_loss.backward()
        if d.on:
            for p in self.aux_params:
                if p.grad is not None:
                    torch_dist.all_reduce(p.grad)
                    p.grad.div_(d.world)
        self.aux_optimizer.step()
        return {"loss": loss, "bpp": losses["bpp_loss"].item(), **self._distortion(losses), "aux": aux_loss.item()}

    def train_epoch(self, epoch: int) -> dict[str, float]:
        args, d = self.args, self.d
        self.model.train()
        self.train_set.set_epoch(epoch)
        sampler = DistributedSampler(self.train_set, num_replicas=d.world, rank=d.rank, shuffle=True, seed=args.seed)
        sampler.set_epoch(epoch)
        loader = self._loader(self.train_set, args.batch_size // d.world, sampler, epoch, drop_last=True)
        steps = len(loader) if not args.steps_per_epoch else min(len(loader), args.steps_per_epoch)
        if d.main and epoch == self.start_epoch and args.steps_per_epoch > len(loader):
            print(f"{self.name}: --steps-per-epoch {args.steps_per_epoch} is more than the {len(loader)} batches "
                  f"of the training set: an epoch is {len(loader)} steps", flush=True)
        metrics = Metrics(self._keys("aux"))
        step_seconds: list[float] = []
        bar = None
        if d.main and not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"{self.name} epoch {epoch}", dynamic_ncols=True, leave=False)
        start = time.perf_counter()
        for i, x in enumerate(loader):
            if i >= steps:
                break
            x = x.to(d.device, non_blocking=True)
            t0 = time.perf_counter()
            step = self.step(x, epoch, i)
            if args.cuda:
                torch.cuda.synchronize(d.device)
            step_seconds.append(time.perf_counter() - t0)
            self.global_step += 1
            metrics.add(x.shape[0], **step)
            if self.writer is not None:
                for k, v in step.items():
                    self.writer.add_scalar(f"train_step/{k}", v, self.global_step)
                self.writer.add_scalar("train_step/lr", self.optimizer.param_groups[0]["lr"], self.global_step)
                self.writer.add_scalar("train_step/seconds", step_seconds[-1], self.global_step)
            if bar is not None:
                bar.set_postfix({k: f"{v:.4g}" for k, v in step.items()}, refresh=False)
                bar.update()
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        means = metrics.means(d)
        n_images = all_sum(d, [metrics.n])[0]
        means["images_per_s"] = n_images / seconds if seconds > 0 else 0.0
        means["step_seconds"] = float(np.median(step_seconds)) if step_seconds else 0.0  # data loading excluded
        means["lr"] = self.optimizer.param_groups[0]["lr"]
        return means

    @torch.no_grad()
    def test_epoch(self, epoch: int) -> dict[str, float]:
        args, d = self.args, self.d
        self.net.eval()
        shard = Subset(self.test_set, list(range(d.rank, len(self.test_set), d.world)))
        loader = self._loader(shard, args.test_batch_size, None, epoch, drop_last=False)
        metrics = Metrics(self._keys())
        for x in loader:
            x = x.to(d.device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=args.amp):
                out = self.net(x)
            out = {"x_hat": out["x_hat"].float(), "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}
            losses = self.criterion(out, x)
            values = {"loss": losses["loss"].item(), "bpp": losses["bpp_loss"].item(), **self._distortion(losses)}
            if args.metric == "mse":  # PSNR per image, of the clamped reconstruction
                mse = (out["x_hat"].clamp(0, 1) - x).pow(2).mean(dim=(1, 2, 3))
                values["psnr"] = sum(psnr(m) for m in mse.tolist()) / x.shape[0]
            metrics.add(x.shape[0], **values)
        means = metrics.means(d)
        means["aux"] = self.net.aux_loss().item()
        self._check_finite(means["loss"], epoch, 0, "test")
        return means

    def log_epoch(self, epoch: int, train: dict, test: dict) -> None:
        if self.writer is None:
            return
        # Epoch figures share the step axis of the per-step ones, so one purge step fits all.
        self.writer.add_scalar("train/epoch", epoch, self.global_step)
        for split, values in (("train", train), ("test", test)):
            for k, v in values.items():
                self.writer.add_scalar(f"{split}/{k}", v, self.global_step)
        self.writer.flush()
        q = "psnr" if self.args.metric == "mse" else "ms_ssim"
        print(
            f"{self.name} test epoch {epoch}: loss {test['loss']:.4f} | bpp {test['bpp']:.4f} | "
            f"{q} {test[q]:.4f} | aux {test['aux']:.2f} | train loss {train['loss']:.4f} | "
            f"{train['images_per_s']:.2f} images/s | median step {train['step_seconds']:.3g} s | lr {train['lr']:.3g}",
            flush=True,
        )

    def fit(self) -> dict[str, Any]:
        for epoch in range(self.start_epoch, self.args.epochs):
            train = self.train_epoch(epoch)
            test = self.test_epoch(epoch)
            self.scheduler.step()
            is_best = test["loss"] < self.best_loss
            if is_best:
                self.best_loss, self.best = test["loss"], {"epoch": epoch, **test}
            self.history.append({"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
                                 **{f"test_{k}": v for k, v in test.items()}})
            self.save(epoch, test, is_best)
            self.log_epoch(epoch, train, test)
        if self.writer is not None:
            self.writer.close()
        return {"lambda": self.lmbda, "run": self.name, "status": "done", **self.best}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------- the sweep
def load_training_checkpoint(path: str) -> dict:
    ck = read_checkpoint(path)
    if not isinstance(ck, dict) or "optimizer" not in ck or "epoch" not in ck or "state_dict" not in ck:
        raise TrainError(f"{path} holds weights but no training state: start from it with --pretrained")
    return ck


def check_shape(args: argparse.Namespace, sd: dict, source: str) -> None:
    """Explicit model-shape options must agree with the weights they are loaded into."""
    config = infer_config(sd)
    for k, v in shape_overrides(args).items():
        got = list(config[k]) if isinstance(v, list) else config[k]
        if got != v:
            raise TrainError(f"--{k.replace('_', '-')} {v} disagrees with {source} ({got})")


#: What a resumed run takes from its checkpoint unless the command line gives it again:
#: without them a bare ``--checkpoint`` would go on with other patches, epochs or held-out images.
RESUMED_OPTIONS = ("epochs", "learning_rate", "batch_size", "test_batch_size", "aux_learning_rate", "patch_size",
                   "clip_max_norm", "lr_epoch", "steps_per_epoch", "max_test_images", "test_fraction", "seed",
                   "save_every")


def given_options(argv: Sequence[str] | None) -> set[str]:
    """The options given on the command line, as opposed to left at their defaults."""
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    given, _ = probe.parse_known_args(argv)
    return set(vars(given))


def restore_run_options(args: argparse.Namespace, saved: dict[str, Any], given: set[str]) -> None:
    for k in RESUMED_OPTIONS:
        if k not in given and k in saved and saved[k] is not None:
            value = saved[k]
            setattr(args, k, tuple(value) if k == "patch_size" else value)


def plan_runs(args: argparse.Namespace, given: set[str] | None = None) -> list[Plan]:
    """One Plan per lambda, refusing to overwrite a run that is not being resumed.

    A run resumed with ``--checkpoint`` takes the checkpoint's options (patch
    size, epochs, schedule, seed, ...) where ``given`` does not name them.
    """
    root = Path(args.save_path) if args.save_path else None
    if args.checkpoint:
        ck = load_training_checkpoint(args.checkpoint)
        if given is not None and isinstance(ck.get("args"), dict):
            restore_run_options(args, ck["args"], given)
            check_args(args)
        lam, metric = float(ck.get("lambda", 0.0)), ck.get("metric", args.metric)
        if args.lmbda is not None and ck.get("lambda") is not None and args.lmbda[0] != lam:
            raise TrainError(f"--lambda {args.lmbda[0]:g} differs from the checkpoint's {lam:g}: "
                             "use --pretrained to move to another lambda")
        if metric != args.metric:
            raise TrainError(f"--type {args.metric} differs from the checkpoint's {metric}")
        if args.lmbda is not None:
            lam = args.lmbda[0]
        if not lam > 0:
            raise TrainError(f"{args.checkpoint} does not record its lambda: pass --lambda")
        check_shape(args, extract_state_dict(ck), args.checkpoint)
        run_dir = root / run_name(args.metric, lam) if root else Path(args.checkpoint).resolve().parent
        latest = run_dir / LATEST
        if latest.exists() and not latest.samefile(args.checkpoint):
            raise TrainError(f"{run_dir} already holds another run: choose another --save_path")
        return [Plan(lam, run_dir, resume=ck)]

    weights = None
    if args.pretrained:
        weights = extract_state_dict(read_checkpoint(args.pretrained))
        check_shape(args, weights, args.pretrained)
    root = root or Path("runs")
    plans = []
    for lam in args.lmbda or [DEFAULT_LAMBDA]:
        run_dir = root / run_name(args.metric, lam)
        latest = run_dir / LATEST
        if latest.exists():
            if not args.resume:
                raise TrainError(f"{run_dir} already holds a run: resume it with --checkpoint {latest} "
                                 "(or --resume), or choose another --save_path")
            ck = load_training_checkpoint(str(latest))
            if ck.get("metric", args.metric) != args.metric:
                raise TrainError(f"{latest} was trained with --type {ck.get('metric')}")
            plans.append(Plan(lam, run_dir, resume=ck))
        else:
            plans.append(Plan(lam, run_dir, weights=weights))
    return plans


def format_table(rows: list[dict], metric: str) -> str:
    q, label = ("psnr", "PSNR dB") if metric == "mse" else ("ms_ssim", "MS-SSIM")
    lines = [f"{'lambda':>8}  {'best epoch':>10}  {'test loss':>10}  {'bpp':>8}  {label:>8}  status"]
    for r in rows:
        if "loss" in r:
            lines.append(f"{r['lambda']:>8g}  {r['epoch']:>10d}  {r['loss']:>10.4f}  {r['bpp']:>8.4f}  "
                         f"{r[q]:>8.4f}  {r['status']}")
        else:
            lines.append(f"{r['lambda']:>8g}  {'-':>10}  {'-':>10}  {'-':>8}  {'-':>8}  {r['status']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # large activations reuse freed memory instead of faulting pages in
    d = None
    try:
        check_args(args)
        plans = plan_runs(args, given_options(argv))
        d = setup_processes(args)
        if args.batch_size % d.world:
            raise TrainError(f"--batch-size {args.batch_size} is not divisible by the {d.world} processes")
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # one warning per unreadable file, even in a second sweep
            train_paths, test_paths, layout = find_splits(args.dataset, args.test_fraction, args.seed)
        if len(train_paths) < args.batch_size:
            raise TrainError(f"{len(train_paths)} training images, fewer than --batch-size {args.batch_size}")
        if d.main:
            print(f"data: {len(train_paths)} training and {len(test_paths)} test images ({layout} layout) "
                  f"from {args.dataset}; {d.world} process(es) on {d.device}", flush=True)
        rows, failed = [], False
        for plan in plans:
            trainer = Trainer(args, plan, d, train_paths, test_paths)
            try:
                rows.append(trainer.fit())
            except Diverged as e:
                failed = True
                trainer.close()
                kept = plan.run_dir / LATEST
                keep = f"; the last good checkpoint is {kept}" if kept.exists() else "; no checkpoint was written"
                if d.main:
                    print(f"error: {e}: run stopped{keep}", file=sys.stderr, flush=True)
                rows.append({"lambda": plan.lmbda, "run": plan.run_dir.name, "status": "diverged", **trainer.best})
        if d.main:
            table = format_table(rows, args.metric)
            print(table, flush=True)
            if args.save and len(rows) > 1:
                root = plans[0].run_dir.parent
                atomic_write_text(table + "\n", root / "sweep_summary.txt")
        return 1 if failed else 0
    except (TrainError, CheckpointError, DatasetError) as e:
        if d is None or d.main:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a full disk while saving: the previous checkpoint is intact
        if d is None or d.main:
            print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if d is None or d.main:
            print("interrupted: resume with --checkpoint <run>/checkpoint_latest.pth.tar", file=sys.stderr)
        return 130
    finally:
        if d is not None and d.on and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
