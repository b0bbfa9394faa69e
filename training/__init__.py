"""Training: options, run folders and locks, the training step, the epoch loop, logs, sweeps."""

from .distributed import Dist
from .loop import Diverged, Stopped, Trainer
from .runs import BEST, LATEST, Plan, RunLock, plan_runs, run_name
from .step import Optimization, make_optimizers, train_step
from .stop import StopRequest
from .sweep import run_sweep

__all__ = [
    "BEST", "LATEST", "Diverged", "Dist", "Optimization", "Plan", "RunLock", "Stopped", "StopRequest", "Trainer",
    "make_optimizers", "plan_runs", "run_name", "run_sweep", "train_step",
]
