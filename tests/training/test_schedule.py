"""The learning rates over epochs: the step schedule, and new rates on a resumed run (training/schedule.py).

Each run is a real ``Trainer`` of the tiny model, resumed as train.py resumes
(``training.runs.resumed_plan``, then ``Trainer._restore``).  An epoch steps the
optimizer, reads the rate (what the loop logs as ``train_lr``) and steps the
scheduler, as ``Trainer.fit`` does; no data is read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.helpers import TINY, command_line
from training import Dist, Plan, Trainer
from training.runs import resumed_plan


class Run:
    """A Trainer with ``train.py -d data TINY ARGV``'s options, or resumed from ``checkpoint`` with them."""

    def __init__(self, folder: Path, *argv: str, checkpoint: dict | None = None):
        config, given = command_line(*TINY, "--no-progress", *argv)
        if checkpoint is None:
            plan = Plan(0.01, folder / "run", config)
        else:
            plan = resumed_plan(config, given, 0.01, folder / "resumed", checkpoint, "checkpoint_latest.pth.tar")
        self.trainer = Trainer(plan, Dist(), [folder / "a.png"], [folder / "a.png"])
        self.epoch = self.trainer.start_epoch

    def epochs(self, n: int) -> list[float]:
        """The network's rate in each of the next ``n`` epochs."""
        rates = []
        for _ in range(n):
            self.trainer.optimizer.step()
            rates.append(self.trainer.optimizer.param_groups[0]["lr"])
            self.trainer.scheduler.step()
            self.epoch += 1
        return rates

    def checkpoint(self) -> dict:
        """What Trainer.save writes after the last epoch run."""
        return self.trainer.checkpoint(self.epoch - 1)


def test_the_papers_schedule_divides_the_rate_by_ten_at_each_milestone(tmp_path):
    assert Run(tmp_path).epochs(50) == pytest.approx([1e-4] * 45 + [1e-5] * 3 + [1e-6] * 2)
    assert Run(tmp_path, "-lr", "2e-4", "--lr_epoch", "1", "3").epochs(4) == pytest.approx([2e-4, 2e-5, 2e-5, 2e-6])


def test_a_resumed_run_goes_on_with_its_schedule(tmp_path):
    """A bare resume continues the stored schedule: its rates are those of a run never stopped."""
    whole = Run(tmp_path, "--lr_epoch", "2", "3", "--epochs", "5").epochs(5)
    first = Run(tmp_path, "--lr_epoch", "2", "3", "--epochs", "5")
    before = first.epochs(2)
    resumed = Run(tmp_path, checkpoint=first.checkpoint())
    assert resumed.trainer.start_epoch == 2 and resumed.trainer.config.lr_epoch == (2, 3)
    assert before + resumed.epochs(3) == whole == pytest.approx([1e-4, 1e-4, 1e-5, 1e-6, 1e-6])


def test_resume_applies_a_new_learning_rate_and_schedule(tmp_path):
    """One epoch at the defaults, then ``--checkpoint … -lr 5e-5 --lr_epoch 2 --aux-learning-rate 2e-3``."""
    first = Run(tmp_path, "--epochs", "1")
    history = first.epochs(1)
    resumed = Run(tmp_path, "--epochs", "4", "-lr", "5e-5", "--lr_epoch", "2", "--aux-learning-rate", "2e-3",
                  checkpoint=first.checkpoint())
    history += resumed.epochs(3)
    assert history == pytest.approx([1e-4, 5e-5, 5e-6, 5e-6])
    assert resumed.trainer.aux_optimizer.param_groups[0]["lr"] == 2e-3
    stored = resumed.checkpoint()["args"]
    assert (stored["learning_rate"], stored["lr_epoch"], stored["aux_learning_rate"]) == (5e-5, [2], 2e-3)


def test_a_new_milestone_already_passed_applies_at_once(tmp_path):
    first = Run(tmp_path)
    first.epochs(3)
    resumed = Run(tmp_path, "--lr_epoch", "1", "2", "4", checkpoint=first.checkpoint())
    assert resumed.epochs(3) == pytest.approx([1e-6, 1e-7, 1e-7])  # two drops passed, the third at epoch 4
