"""One training process, or one of ``torchrun``'s: rank, device, and the few collectives training needs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints and logs and prints; the others only compute."""
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


def setup_processes(cuda: bool, tf32: bool = True) -> Dist:
    """This process's place among ``torchrun``'s (NCCL on CUDA, gloo on CPU), or the only one.

    ``tf32``: float32 matmuls and convolutions on CUDA in TF32 (10-bit
    mantissa products, float32 sums), as training on Ampere and later
    usually is; the model and its checkpoints stay float32.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if world > 1:
        torch_dist.init_process_group("nccl" if cuda else "gloo")
        if not cuda:  # share the cores among the local processes
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return Dist(rank, world, local_rank, device)


def teardown_processes(d: Dist | None) -> None:
    if d is not None and d.on and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def all_sum(d: Dist, values: list[float]) -> list[float]:
    """Element-wise sums over all processes (the values themselves with one process)."""
    if not d.on:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    torch_dist.all_reduce(t)
    return t.tolist()


def all_max(d: Dist, value: float) -> float:
    """The largest ``value`` of all processes."""
    if not d.on:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=d.device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return t.item()


def all_gather(d: Dist, obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order."""
    if not d.on:
        return [obj]
    out: list[Any] = [None] * d.world
    torch_dist.all_gather_object(out, obj)
    return out


def average_gradients(d: Dist, params: list[torch.nn.Parameter]) -> None:
    """Mean of the gradients over the processes, for a backward DDP does not see."""
    if not d.on:
        return
    for p in params:
        if p.grad is not None:
            torch_dist.all_reduce(p.grad)
            p.grad.div_(d.world)
