"""What a run reports: TensorBoard scalars, a progress bar, one printed line per epoch, metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from utils.files import write_text_atomic

from .distributed import Dist, all_sum


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

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "sums": dict(self.sums)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.n = float(state["n"])
        self.sums.update({k: float(v) for k, v in state["sums"].items() if k in self.sums})


class RunLog:
    """Rank 0's reports of one run; every method is a no-op in the other processes.

    Epoch figures share the step axis of the per-step ones, so one purge step
    (the global step of the checkpoint a run resumes from) drops everything a
    killed run logged after it.
    """

    def __init__(self, run_dir: Path, name: str, metric: str, d: Dist, global_step: int, progress: bool):
        self.run_dir, self.name, self.metric = run_dir, name, metric
        self.progress = progress and d.main
        self.writer = None
        self.bar = None
        if d.main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir), purge_step=global_step + 1 if global_step else None)

    # ------------------------------------------------------------- steps
    def start_epoch(self, epoch: int, steps: int, done: int = 0) -> None:
        if self.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=steps, initial=done, desc=f"{self.name} epoch {epoch}", dynamic_ncols=True,
                            leave=False)

    def step(self, global_step: int, figures: dict[str, float], lr: float, seconds: float) -> None:
        if self.writer is not None:
            for k, v in figures.items():
                self.writer.add_scalar(f"train_step/{k}", v, global_step)
            self.writer.add_scalar("train_step/lr", lr, global_step)
            self.writer.add_scalar("train_step/seconds", seconds, global_step)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in figures.items()}, refresh=False)
            self.bar.update()

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # ------------------------------------------------------------- epochs
    def epoch(self, epoch: int, global_step: int, train: dict, test: dict) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("train/epoch", epoch, global_step)
        for split, values in (("train", train), ("test", test)):
            for k, v in values.items():
                self.writer.add_scalar(f"{split}/{k}", v, global_step)
        self.writer.flush()
        q = "psnr" if self.metric == "mse" else "ms_ssim"
        print(
            f"{self.name} test epoch {epoch}: loss {test['loss']:.4f} | bpp {test['bpp']:.4f} | "
            f"{q} {test[q]:.4f} | aux {test['aux']:.2f} | train loss {train['loss']:.4f} | "
            f"{train['images_per_s']:.2f} images/s | median step {train['step_seconds']:.3g} s | lr {train['lr']:.3g}",
            flush=True,
        )

    def pictures(self, epoch: int, global_step: int, original, x_hat, bits_per_pixel, history: list[dict]) -> None:
        """A fixed test image, its reconstruction, where the bits went, and the RD points of all epochs so far."""
        if self.writer is None:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        import torch

        if epoch == 0 or not getattr(self, "_original_logged", False):
            self.writer.add_image("test_image/original", original, global_step)
            self._original_logged = True
        self.writer.add_image("test_image/reconstruction", x_hat.clamp(0, 1), global_step)
        bits = bits_per_pixel / max(float(bits_per_pixel.max()), 1e-9)
        colored = plt.get_cmap("inferno")(bits.numpy())[..., :3]  # (H, W, 3)
        self.writer.add_image("test_image/bits_per_pixel", torch.from_numpy(np.ascontiguousarray(colored)),
                              global_step, dataformats="HWC")
        quality = "psnr" if self.metric == "mse" else "ms_ssim"
        points = [(h["test_bpp"], h[f"test_{quality}"]) for h in history if f"test_{quality}" in h]
        if points:
            fig, ax = plt.subplots(figsize=(4.5, 3.5))
            ax.plot(*zip(*points), "o-", color="tab:blue", markersize=3)
            ax.plot(*points[-1], "o", color="tab:red")
            ax.set_xlabel("test bpp")
            ax.set_ylabel("test PSNR dB" if quality == "psnr" else "test MS-SSIM")
            ax.set_title(f"{self.name}: RD point of each epoch", fontsize=9)
            ax.grid(True, alpha=0.4)
            fig.tight_layout()
            self.writer.add_figure("test_image/rd_by_epoch", fig, global_step, close=True)
        self.writer.flush()

    def say(self, text: str) -> None:
        if self.writer is not None:
            print(text, flush=True)

    def write_history(self, history: list[dict]) -> None:
        if self.writer is not None:
            write_text_atomic(self.run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))

    def close(self) -> None:
        self.end_epoch()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
