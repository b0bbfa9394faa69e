"""Training: options and their config, run folders and locks, the training step, the epoch loop, logs, sweeps.

The names below load from their modules on first use, so that ``train.py
--help`` reads the options (``training.options``) without importing torch.
"""

from typing import TYPE_CHECKING

from utils.light_imports import lazy_exports, light_imports

light_imports()  # before the first import of CompressAI

if TYPE_CHECKING:
    from .config import TrainingConfig
    from .distributed import Dist
    from .loop import Diverged, Stopped, Trainer
    from .runs import BEST, LATEST, Plan, RunLock, plan_runs, run_name
    from .step import Optimization, make_optimizers, train_step
    from .stop import StopRequest
    from .sweep import run_sweep

__getattr__, __dir__ = lazy_exports(__name__, {
    "TrainingConfig": "config", "Dist": "distributed", "Diverged": "loop", "Stopped": "loop", "Trainer": "loop",
    **dict.fromkeys(("BEST", "LATEST", "Plan", "RunLock", "plan_runs", "run_name"), "runs"),
    **dict.fromkeys(("Optimization", "make_optimizers", "train_step"), "step"),
    "StopRequest": "stop", "run_sweep": "sweep",
})

__all__ = [
    "BEST", "LATEST", "Diverged", "Dist", "Optimization", "Plan", "RunLock", "Stopped", "StopRequest", "Trainer",
    "TrainingConfig", "make_optimizers", "plan_runs", "run_name", "run_sweep", "train_step",
]
