"""`on_rank_zero` in one process: rank 0's result comes back, rank 0's error is raised as itself."""

from __future__ import annotations

import pytest
from lightning.pytorch import Trainer

from robovlms_mobile.train.ranks import on_rank_zero


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    return Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)


def test_rank_zero_result_is_returned(trainer):
    assert on_rank_zero(trainer, "adding", lambda: {"success_rate": 0.5}) == {"success_rate": 0.5}


def test_rank_zero_error_is_raised_after_the_broadcast(trainer):
    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        on_rank_zero(trainer, "writing sim_eval.json", fail)
