"""One run: epochs of training steps and a test pass, checkpoints, resuming exactly where it stopped.

On CPU a resumed run computes what an uninterrupted one does, to the bit: the
checkpoint holds the model, both optimizers, the scheduler, the best loss,
the history and every process's random state, and random crops depend only
on ``(seed, epoch, index)``.  A run stopped mid-epoch (a signal, a time
budget) saves how far into the epoch it got and resumes at the next batch.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler, Subset

from datasets import PatchDataset
from models import TCM, model_from_state_dict
from utils.cli import ToolError
from utils.files import copy_atomic, save_torch_atomic
from utils.provenance import provenance

from .distributed import Dist, all_gather, all_sum
from .failures import out_of_memory_says
from .logs import Metrics, RunLog
from .runs import BEST, LATEST, Plan
from .schedule import apply_schedule_options, lr_scheduler
from .state import rng_state, seed_all, set_rng_state
from .step import (NonFiniteLoss, Optimization, autocast, distortion_figures, float_outputs, keep_entropy_models_fp32,
                   train_step)
from .stop import StopRequest
from .workers import batches, worker_init


class Diverged(Exception):
    """A non-finite loss: the run stops, its last good checkpoint is kept."""


class Stopped(Exception):
    """The run stopped early (signal or time budget) after saving a checkpoint it can resume from."""

    def __init__(self, reason: str, where: str):
        super().__init__(f"{reason} at {where}")
        self.reason, self.where = reason, where


class SkipFirst(Sampler):
    """The indices of ``sampler`` but the first ``n``: a resumed epoch starts at its next batch."""

    def __init__(self, sampler: Sampler, n: int):
        self.sampler, self.n = sampler, n

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.sampler)[self.n:])

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.n)  # type: ignore[arg-type]


class Trainer:
    """One lambda: model, optimizers, data, logs and checkpoints."""

    def __init__(self, plan: Plan, d: Dist, train_paths: list, test_paths: list, stop: StopRequest | None = None):
        config = plan.config
        self.config, self.plan, self.d = config, plan, d
        self.lmbda, self.run_dir = plan.lmbda, plan.run_dir
        self.name = plan.run_dir.name
        self.stop = stop or StopRequest()
        seed_all(config.seed)
        source = plan.resume if plan.resume is not None else plan.weights
        self.net = model_from_state_dict(source) if source is not None else TCM.from_config(config.model_config())
        self.model_config = self.net.model_config.as_dict()
        self.net.to(d.device)
        if config.amp:
            keep_entropy_models_fp32(self.net)
        model: nn.Module = self.net
        if d.on:
            model = nn.parallel.DistributedDataParallel(self.net, device_ids=[d.local_rank] if config.cuda else None)
        self.opt = Optimization.paper_recipe(
            self.net, self.lmbda, config.metric, config.learning_rate, config.aux_learning_rate,
            clip_max_norm=config.clip_max_norm, amp=config.amp, dist=d, model=model)
        self.optimizer, self.aux_optimizer = self.opt.optimizer, self.opt.aux_optimizer
        self.scheduler = lr_scheduler(self.optimizer, config)

        self.train_set = PatchDataset(train_paths, config.patch_size, train=True, seed=config.seed)
        tests = test_paths[: config.max_test_images] if config.max_test_images else test_paths
        self.test_set = PatchDataset(tests, config.patch_size, train=False, seed=config.seed)

        self.start_epoch, self.global_step = 0, 0
        self.best_loss: float = math.inf
        self.best: dict[str, float] = {}
        self.history: list[dict] = []
        self.partial: dict[str, Any] | None = None  # how far into start_epoch a stopped run got
        self.last_test_loss: float | None = None
        if plan.resume is not None:
            self._restore(plan.resume)
        elif d.rank:  # distinct quantisation noise per process; weights come from rank 0
            seed_all(config.seed + 7919 * d.rank)
        self.log = RunLog(self.run_dir, self.name, config.metric, d, self.global_step, not config.no_progress)

    @property
    def model(self) -> nn.Module:
        return self.opt.model

    @property
    def criterion(self) -> nn.Module:
        return self.opt.criterion

    # ------------------------------------------------------------- checkpoints
    def _restore(self, ck: dict) -> None:
        try:
            self.optimizer.load_state_dict(ck["optimizer"])
            self.aux_optimizer.load_state_dict(ck["aux_optimizer"])
            self.scheduler.load_state_dict(ck["lr_scheduler"])
            if ck.get("grad_scaler"):
                self.opt.scaler.load_state_dict(ck["grad_scaler"])
            self.start_epoch = int(ck["epoch"]) + 1
            # The published script's checkpoints lack these.
            self.global_step = int(ck.get("global_step", 0))
            self.best_loss = float(ck.get("best_loss", ck.get("loss", math.inf)))
            self.best = dict(ck.get("best", {}))
            self.history = list(ck.get("history", []))
            self.last_test_loss = ck.get("loss")
            if ck.get("partial"):
                self.partial = dict(ck["partial"])
                self.start_epoch = int(self.partial["epoch"])
        except (KeyError, ValueError, TypeError) as e:
            raise ToolError(f"the checkpoint's training state does not fit this run: {e}") from None
        apply_schedule_options(self.optimizer, self.aux_optimizer, self.scheduler, self.config)
        states = ck.get("rng", [])
        if len(states) == self.d.world:
            set_rng_state(states[self.d.rank])
        else:
            seed_all(self.config.seed + 7919 * self.d.rank + self.start_epoch)

    def checkpoint(self, epoch: int, partial: dict[str, Any] | None = None) -> dict[str, Any]:
        """The training checkpoint: weights, optimizers, schedule, history, options, provenance, RNG."""
        return {
            "epoch": epoch,  # the last finished epoch
            "partial": partial,  # or how far into the next one
            "global_step": self.global_step,
            "state_dict": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.opt.scaler.state_dict() if self.opt.scaler.is_enabled() else {},
            "loss": self.last_test_loss,
            "best_loss": self.best_loss,
            "best": self.best,
            "history": self.history,
            "lambda": self.lmbda,
            "metric": self.config.metric,
            "model_config": self.model_config,
            "args": self.config.to_stored(lmbda=self.lmbda),
            "provenance": provenance(self.d.device),
        }

    def save(self, epoch: int, is_best: bool = False, partial: dict[str, Any] | None = None) -> None:
        rng = all_gather(self.d, rng_state())  # collective: every process takes part
        if not self.d.main:
            return
        if self.config.save:
            latest = self.run_dir / LATEST
            save_torch_atomic({**self.checkpoint(epoch, partial), "rng": rng}, latest)
            if is_best:
                copy_atomic(latest, self.run_dir / BEST)
            if partial is None and self.config.save_every and (epoch + 1) % self.config.save_every == 0:
                copy_atomic(latest, self.run_dir / f"checkpoint_epoch{epoch:03d}.pth.tar")
        self.log.write_history(self.history)

    @property
    def latest(self) -> Path:
        return self.run_dir / LATEST

    # ------------------------------------------------------------- epochs
    def _loader(self, dataset, batch: int, sampler, epoch: int, drop_last: bool) -> DataLoader:
        g = torch.Generator()
        g.manual_seed(self.config.seed * 100003 + epoch)
        return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=self.config.num_workers,
                          generator=g, drop_last=drop_last, pin_memory=self.config.cuda,
                          worker_init_fn=worker_init)

    def _out_of_memory(self, when: str, batch: int, test: bool = False) -> str:
        """What to say if a pass runs out of memory: where, with what, and what to make smaller."""
        h, w = self.config.patch_size
        per = " per process" if self.d.on else ""
        option = "--test-batch-size" if test else "--batch-size"
        return (f"{self.name}: out of memory {when} on {self.d.device} with batches of {batch} {h}x{w} "
                f"patches{per}: try a smaller {option} or --patch-size")

    def _keys(self, *extra: str) -> list[str]:
        quality = ["mse", "psnr"] if self.config.metric == "mse" else ["ms_ssim"]
        return ["loss", "bpp", *quality, *extra]

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch (from where a stopped run left it); raises Stopped or Diverged."""
        config, d = self.config, self.d
        self.model.train()
        self.train_set.set_epoch(epoch)
        sampler = DistributedSampler(self.train_set, num_replicas=d.world, rank=d.rank, shuffle=True, seed=config.seed)
        sampler.set_epoch(epoch)
        batch = config.batch_size // d.world
        full = len(sampler) // batch  # batches of one pass (drop_last)
        steps = full if not config.steps_per_epoch else min(full, config.steps_per_epoch)
        if epoch == self.start_epoch and config.steps_per_epoch > full:
            self.log.say(f"{self.name}: --steps-per-epoch {config.steps_per_epoch} is more than the {full} batches "
                         f"of the training set: an epoch is {full} steps")
        metrics = Metrics(self._keys("aux"))
        step_seconds: list[float] = []
        done = 0
        if self.partial is not None and int(self.partial["epoch"]) == epoch:
            done = int(self.partial["steps"])
            metrics.load_state(self.partial["train"])
            step_seconds = list(self.partial.get("step_seconds", []))
            self.partial = None
        loader = self._loader(self.train_set, batch, SkipFirst(sampler, done * batch), epoch, drop_last=True)
        self.log.start_epoch(epoch, steps, done)
        start = time.perf_counter()
        n_images = 0
        with batches(loader) as loaded, out_of_memory_says(self._out_of_memory(f"at epoch {epoch}", batch)):
            for i in range(done, steps):
                reason = self.stop.should_stop(d)
                if reason is not None:
                    self.log.end_epoch()
                    self.save(epoch - 1, partial={"epoch": epoch, "steps": i, "train": metrics.state(),
                                                  "step_seconds": step_seconds})
                    raise Stopped(reason, f"epoch {epoch} step {i}")
                x = next(loaded).to(d.device, non_blocking=True)
                t0 = time.perf_counter()
                try:
                    figures = train_step(self.opt, x)
                except NonFiniteLoss as e:
                    raise Diverged(f"{self.name}: training {e} at epoch {epoch} step {i}") from None
                if config.cuda:
                    torch.cuda.synchronize(d.device)
                step_seconds.append(time.perf_counter() - t0)
                self.global_step += 1
                n_images += x.shape[0]
                metrics.add(x.shape[0], **figures)
                self.log.step(self.global_step, figures, self.optimizer.param_groups[0]["lr"], step_seconds[-1])
        seconds = time.perf_counter() - start
        self.log.end_epoch()
        means = metrics.means(d)
        means["images_per_s"] = all_sum(d, [n_images])[0] / seconds if seconds > 0 else 0.0
        means["step_seconds"] = float(np.median(step_seconds)) if step_seconds else 0.0  # data loading excluded
        means["lr"] = self.optimizer.param_groups[0]["lr"]
        return means

    @torch.no_grad()
    def test_epoch(self, epoch: int) -> dict[str, float]:
        config, d = self.config, self.d
        self.net.eval()
        shard = Subset(self.test_set, list(range(d.rank, len(self.test_set), d.world)))
        loader = self._loader(shard, config.test_batch_size, None, epoch, drop_last=False)
        metrics = Metrics(self._keys())
        from metrics.quality import psnr_from_mse

        where = self._out_of_memory(f"while testing epoch {epoch}", config.test_batch_size, test=True)
        with batches(loader) as loaded, out_of_memory_says(where):
            for x in loaded:
                x = x.to(d.device, non_blocking=True)
                with autocast(config.amp):
                    out = float_outputs(self.net(x))
                losses = self.criterion(out, x)
                values = {"loss": losses["loss"].item(), "bpp": losses["bpp_loss"].item(),
                          **distortion_figures(losses, config.metric)}
                if config.metric == "mse":  # PSNR per image, of the clamped reconstruction
                    mse = (out["x_hat"].clamp(0, 1) - x).pow(2).mean(dim=(1, 2, 3))
                    values["psnr"] = sum(psnr_from_mse(m) for m in mse.tolist()) / x.shape[0]
                metrics.add(x.shape[0], **values)
        means = metrics.means(d)
        means["aux"] = self.net.aux_loss().item()
        if not math.isfinite(means["loss"]):  # the same figure in every process
            raise Diverged(f"{self.name}: test loss is not finite ({means['loss']}) at epoch {epoch}")
        return means

    @torch.no_grad()
    def log_pictures(self, epoch: int) -> None:
        """TensorBoard pictures of the first test image (rank 0 only)."""
        if not self.d.main or self.log.writer is None:
            return
        from metrics.bits import STRIDES, bit_map, latent_bits

        self.net.eval()
        x = self.test_set[0].unsqueeze(0).to(self.d.device)
        out = self.net(x)
        bits = sum(bit_map(latent_bits(out["likelihoods"][k].cpu()), stride) for k, stride in STRIDES.items())
        self.log.pictures(epoch, self.global_step, x[0].cpu(), out["x_hat"][0].float().cpu(), bits.float(),
                          self.history)

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs; the best epoch's figures.  Raises Stopped or Diverged."""
        for epoch in range(self.start_epoch, self.config.epochs):
            train = self.train_epoch(epoch)
            test = self.test_epoch(epoch)
            self.scheduler.step()
            self.last_test_loss = test["loss"]
            is_best = test["loss"] < self.best_loss
            if is_best:
                self.best_loss, self.best = test["loss"], {"epoch": epoch, **test}
            self.history.append({"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
                                 **{f"test_{k}": v for k, v in test.items()}})
            self.save(epoch, is_best)
            self.log.epoch(epoch, self.global_step, train, test)
            if self.config.image_every and (epoch + 1) % self.config.image_every == 0:
                self.log_pictures(epoch)
            if epoch + 1 < self.config.epochs and (reason := self.stop.should_stop(self.d)) is not None:
                raise Stopped(reason, f"the end of epoch {epoch}")  # the epoch's checkpoint resumes it
        return {"lambda": self.lmbda, "run": self.name, "status": "done", **self.best}

    def close(self) -> None:
        self.log.close()
