"""The stall watchdog's line and its settings (the two-process stall itself: tests/train/test_ddp.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from robovlms_mobile.config import ConfigError, validate_config
from robovlms_mobile.train.watchdog import main_thread_at, stall_line


def _beat(ordinal: int, step: int, where: str, now: str, waiting: bool) -> dict:
    return {"ordinal": ordinal, "ticks": 0, "step": step, "where": where, "now": now, "waiting": waiting}


def test_the_rank_behind_is_named_with_its_step_and_place():
    line = stall_line(5, {0: _beat(7, 3, "in train batch 1 of epoch 0", "graph.py:829 in _engine_run_backward", True),
                          1: _beat(6, 3, "after train batch 0 of epoch 0", "mine.py:12 in on_train_batch_end", False)})
    assert "\n" not in line and "no rank made progress for 5 min" in line
    assert "rank 1 at step 3 (after train batch 0 of epoch 0; now mine.py:12 in on_train_batch_end) stopped first" in line
    assert "rank 0 waits at step 3" in line


def test_at_the_same_hook_the_rank_outside_a_collective_stopped_first():
    line = stall_line(1, {0: _beat(4, 1, "after train batch 0 of epoch 0", "distributed.py:2364 in _sync", True),
                          1: _beat(4, 1, "after train batch 0 of epoch 0", "mine.py:12 in sleep_forever", False)})
    assert line.index("rank 1 at step 1") < line.index("stopped first") < line.index("rank 0 waits at step 1")


def test_ranks_all_in_a_collective_stopped_together():
    line = stall_line(1, {0: _beat(4, 1, "x", "distributed_c10d.py:1 in barrier", True),
                          1: _beat(4, 1, "x", "distributed_c10d.py:2 in all_reduce", True)})
    assert "rank 0 at step 1" in line and "rank 1 at step 1" in line
    assert "stopped together in different collectives" in line  # the hang of issue 22: a barrier against an all_reduce


def test_main_thread_place_is_read_from_another_thread():
    found = []
    thread = threading.Thread(target=lambda: found.append(main_thread_at()))
    thread.start()
    thread.join()
    place, waiting = found[0]
    assert "in " in place and ".py:" in place and waiting is False


@pytest.mark.parametrize("value", [-1, "5", True], ids=["negative", "string", "bool"])
def test_bad_stall_timeout_is_one_clear_error(base_config, value):
    with pytest.raises(ConfigError, match="stall_timeout_min"):
        validate_config(dict(base_config, stall_timeout_min=value))


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_bad_stall_timeout_flag_is_one_line(value, tmp_path):
    cli = str(Path(sys.executable).with_name("robovlms-mobile"))
    out = subprocess.run([cli, "train", str(tmp_path / "cfg.json"), "--stall-timeout", value], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "--stall-timeout" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
