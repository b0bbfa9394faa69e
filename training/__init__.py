"""Training: options and their config, run folders and locks, the training step, the epoch loop, logs, sweeps."""

from utils.process import quiet_compressai_warnings

quiet_compressai_warnings()  # before the first import of CompressAI

from .config import TrainingConfig  # noqa: E402
from .distributed import Dist  # noqa: E402
from .loop import Diverged, Stopped, Trainer  # noqa: E402
from .runs import BEST, LATEST, Plan, RunLock, plan_runs, run_name  # noqa: E402
from .step import Optimization, make_optimizers, train_step  # noqa: E402
from .stop import StopRequest  # noqa: E402
from .sweep import run_sweep  # noqa: E402

__all__ = [
    "BEST", "LATEST", "Diverged", "Dist", "Optimization", "Plan", "RunLock", "Stopped", "StopRequest", "Trainer",
    "TrainingConfig", "make_optimizers", "plan_runs", "run_name", "run_sweep", "train_step",
]
