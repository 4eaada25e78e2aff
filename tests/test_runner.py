"""The trainers' shared skeleton: learning-rate schedule, time budget, step loop, optimizer checkpoints."""

import pytest

from editmgt_core.train import mgt, runner


def test_learning_rate_follows_a_time_budget():
    cfg = mgt.TrainConfig(lr=1e-3, warmup=10, steps=1000)
    assert runner.lr_at(5, cfg, progress=0.9) == pytest.approx(6e-4)  # warmup still counts in steps
    assert runner.lr_at(500, cfg, progress=0.0) == pytest.approx(1e-3)
    assert runner.lr_at(20, cfg, progress=1.0) == pytest.approx(1e-4)  # the budget, not the step count, ends decay
    assert runner.lr_at(20, cfg) > 9.9e-4
