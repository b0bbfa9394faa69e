"""The learning rates over epochs: the step schedule, and new rates on a resumed run (training/schedule.py).

The optimizers here hold one parameter each: the schedule works on their
param groups only.  Each epoch steps the optimizer, reads the rate (what the
loop logs as ``train_lr``) and steps the scheduler, as ``Trainer.fit`` does.
"""

from __future__ import annotations

import pytest
import torch

from tests.training.helpers import command_line, config_of
from training.config import TrainingConfig
from training.schedule import apply_schedule_options, lr_scheduler


class Run:
    """The network's and the bottleneck's Adam with the config's rates, and the schedule (as Trainer builds them)."""

    def __init__(self, config: TrainingConfig, checkpoint: dict | None = None):
        self.optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
        self.aux_optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=config.aux_learning_rate)
        self.scheduler = lr_scheduler(self.optimizer, config)
        if checkpoint is not None:  # Trainer._restore: the stored state, then the config's options over it
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.aux_optimizer.load_state_dict(checkpoint["aux_optimizer"])
            self.scheduler.load_state_dict(checkpoint["lr_scheduler"])
            apply_schedule_options(self.optimizer, self.aux_optimizer, self.scheduler, config)

    def epochs(self, n: int) -> list[float]:
        """The network's rate in each of the next ``n`` epochs."""
        rates = []
        for _ in range(n):
            self.optimizer.step()
            rates.append(self.optimizer.param_groups[0]["lr"])
            self.scheduler.step()
        return rates

    def checkpoint(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "aux_optimizer": self.aux_optimizer.state_dict(),
                "lr_scheduler": self.scheduler.state_dict()}


def test_the_papers_schedule_divides_the_rate_by_ten_at_each_milestone():
    rates = Run(config_of()).epochs(50)
    assert rates == pytest.approx([1e-4] * 45 + [1e-5] * 3 + [1e-6] * 2)
    assert Run(config_of("-lr", "2e-4", "--lr_epoch", "1", "3")).epochs(4) == pytest.approx([2e-4, 2e-5, 2e-5, 2e-6])


def test_a_resumed_run_goes_on_with_its_schedule():
    """A bare resume continues the stored schedule: its rates are those of a run never stopped."""
    config = config_of("--lr_epoch", "2", "3", "--epochs", "5")
    whole = Run(config).epochs(5)
    first = Run(config)
    before = first.epochs(2)
    resumed_config, given = command_line("--checkpoint", "ck.pth.tar")
    resumed_config = resumed_config.resumed_from(config.to_stored(lmbda=0.01), given)
    assert resumed_config.lr_epoch == (2, 3) and resumed_config.learning_rate == 1e-4
    resumed = Run(resumed_config, first.checkpoint())
    assert before + resumed.epochs(3) == whole == pytest.approx([1e-4, 1e-4, 1e-5, 1e-6, 1e-6])


def test_resume_applies_a_new_learning_rate_and_schedule():
    """One epoch at the defaults, then ``--checkpoint … -lr 5e-5 --lr_epoch 2 --aux-learning-rate 2e-3``."""
    first = Run(config_of("--epochs", "1"))
    history = first.epochs(1)
    config, given = command_line("--checkpoint", "ck.pth.tar", "--epochs", "4", "-lr", "5e-5", "--lr_epoch", "2",
                                 "--aux-learning-rate", "2e-3")
    config = config.resumed_from(config_of("--epochs", "1").to_stored(lmbda=0.01), given)
    resumed = Run(config, first.checkpoint())
    history += resumed.epochs(config.epochs - 1)
    assert history == pytest.approx([1e-4, 5e-5, 5e-6, 5e-6])
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(5e-6)
    assert resumed.aux_optimizer.param_groups[0]["lr"] == 2e-3


def test_a_new_milestone_already_passed_applies_at_once():
    first = Run(config_of())
    first.epochs(3)
    config, given = command_line("--checkpoint", "ck.pth.tar", "--lr_epoch", "1", "2", "4")
    resumed = Run(config.resumed_from(config_of().to_stored(lmbda=0.01), given), first.checkpoint())
    assert resumed.epochs(3) == pytest.approx([1e-6, 1e-7, 1e-7])  # two drops passed, the third at epoch 4
