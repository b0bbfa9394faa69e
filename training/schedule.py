"""The learning rates: the paper's step schedule, and the rates a resumed run is given anew."""

from __future__ import annotations

import bisect
from collections import Counter

from torch.optim import Optimizer
from torch.optim.lr_scheduler import MultiStepLR

from .config import TrainingConfig


def lr_scheduler(optimizer: Optimizer, config: TrainingConfig) -> MultiStepLR:
    """The network's rate divided by 10 at each ``--lr_epoch`` (the scheduler steps once an epoch)."""
    return MultiStepLR(optimizer, milestones=list(config.lr_epoch), gamma=0.1)


def apply_schedule_options(optimizer: Optimizer, aux_optimizer: Optimizer, scheduler: MultiStepLR,
                           config: TrainingConfig) -> None:
    """The config's rates and milestones over a schedule restored from a checkpoint.

    A resumed run's config holds the checkpoint's own options unless the
    command line gave them again (``TrainingConfig.resumed_from``); given
    again, ``-lr``, ``--lr_epoch`` and ``--aux-learning-rate`` set the schedule
    from here on: the rate is the new base rate divided by 10 for each new
    milestone already passed.
    """
    new_base = [config.learning_rate] * len(optimizer.param_groups)
    new_milestones = Counter(config.lr_epoch)
    if list(scheduler.base_lrs) != new_base or Counter(scheduler.milestones) != new_milestones:
        scheduler.base_lrs = new_base
        scheduler.milestones = new_milestones
        drops = bisect.bisect_right(sorted(new_milestones.elements()), scheduler.last_epoch)
        for group in optimizer.param_groups:
            group["initial_lr"] = config.learning_rate
            group["lr"] = config.learning_rate * scheduler.gamma**drops
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    for group in aux_optimizer.param_groups:
        group["lr"] = config.aux_learning_rate
