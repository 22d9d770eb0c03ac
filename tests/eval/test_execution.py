"""The closed loop under simulated inference delay: sync waits, async drives, alignment keeps the expert's path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robovlms_mobile.eval.closed_loop import expert_run, run_episode
from robovlms_mobile.eval.execution import ExecutedPolicy, jerk
from robovlms_mobile.runtime.chunking import StrategySpec
from robovlms_mobile.runtime.executor import ExecutionSpec
from robovlms_mobile.sim.expert import expert_episode
from robovlms_mobile.sim.scenarios import build_world, parse_scenario

from sim_fixtures import sim_checkpoint, sim_episodes  # noqa: F401  (fixtures)

SIZE = (36, 64)
N = 10
CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


def expert_driver(execution: ExecutionSpec, delay: int, world) -> ExecutedPolicy:
    """Chunks of the expert's own actions, from the action the robot is at when the frame is taken."""
    actions = expert_episode(world, SIZE).actions[:, :2]
    padded = np.concatenate([actions, np.zeros((N, 2))])  # the expert stops at its end

    def chunk(frame, instruction):
        k = driver.executor.executed  # actions executed when this frame was taken
        return padded[k:k + N]

    driver = ExecutedPolicy(chunk, lambda: None, N, execution, delay_steps=delay)
    return driver


@pytest.mark.parametrize("delay", [0, 2, 5])
@pytest.mark.parametrize("execution", ["sync", "async"])
def test_late_answers_aligned_by_their_delay_keep_the_expert_path(execution, delay):
    world = build_world(parse_scenario("1box_left_medium"), [1000, 0])
    spec = ExecutionSpec(execution, strategy=StrategySpec("receding"))
    fields, _ = run_episode(expert_driver(spec, delay, world), world, frame_size=SIZE)
    assert fields["success"] and fields["path_length"] == pytest.approx(expert_run(world)[0])
    moving = fields["steps"] - fields["idle_steps"]
    if execution == "async":  # only the wait for the first answer; never dry afterwards (2 * delay <= chunk)
        assert fields["idle_steps"] == delay and fields["gap_steps"] == 0
    else:  # the robot waits `delay` steps for every one-step answer
        assert fields["idle_steps"] == delay * moving


@pytest.mark.parametrize("delay", [0, 3, 5])
def test_a_query_is_told_the_actions_that_run_while_it_is_out(delay):
    """committed_steps k: each query gets the plan for its next min(k, delay) steps, exactly what then runs."""
    world = build_world(parse_scenario("1box_left_medium"), [1000, 0])
    actions = expert_episode(world, SIZE).actions[:, :2]
    padded = np.concatenate([actions, np.zeros((2 * N, 2))])
    told: list[tuple[int, np.ndarray]] = []

    def chunk(frame, instruction, committed):
        k = driver.executor.executed
        told.append((k, committed))
        return padded[k:k + N]

    driver = ExecutedPolicy(chunk, lambda: None, N, ExecutionSpec("async"), delay_steps=delay, committed_steps=4)
    fields, _ = run_episode(driver, world, frame_size=SIZE)
    assert fields["success"] and len(told) > 2
    assert told[0][1].shape == (0, 2)  # the first query: nothing queued
    for k, committed in told[1:]:
        assert len(committed) == min(4, delay)
        np.testing.assert_allclose(committed, padded[k:k + len(committed)])  # the expert's own next actions
    with pytest.raises(ValueError, match="committed steps"):
        ExecutedPolicy(chunk, lambda: None, N, ExecutionSpec("async"), committed_steps=N)


def _long_route_world():
    """A test world whose expert moves for more than one chunk (the worlds vary; the first such one)."""
    for k in range(50):
        for name in ("1box_left_far", "1box_right_far", "2box_hori_left_far"):
            world = build_world(parse_scenario(name), [1000, k])
            moving = np.abs(expert_episode(world, SIZE).actions[:, :2]).sum(1) > 0
            if moving.sum() > N:
                return world
    raise AssertionError("no test world whose expert moves for more than one chunk")


def test_async_with_a_delay_over_half_the_chunk_has_gaps():
    world = _long_route_world()
    fields, _ = run_episode(expert_driver(ExecutionSpec("async"), 7, world), world, frame_size=SIZE)
    assert fields["steps"] - fields["idle_steps"] > N  # long enough for the second chunk to end
    assert fields["gap_steps"] > 0  # one model, one query at a time: the chunk ends before the next answer


def test_jerk_is_the_mean_velocity_change():
    assert jerk([np.zeros(2), np.array([3.0, 4.0]), np.array([3.0, 4.0])]) == pytest.approx(2.5)
    assert jerk([np.ones(2)]) == 0.0


def test_delay_outside_the_chunk_is_refused():
    with pytest.raises(ValueError, match="0..10"):
        ExecutedPolicy(lambda f, i: np.zeros((N, 2)), lambda: None, N, ExecutionSpec(), delay_steps=N + 1)


def test_eval_closed_loop_async_with_delay_reports_idle_and_jerk(sim_checkpoint, tiny_model_dir, tmp_path):
    args = [CLI, "eval", "closed-loop", str(sim_checkpoint), "--base-model-dir", str(tiny_model_dir), "--episodes", "1",
            "--scenarios", "1box_left_close", "--frame-size", "36x64", "--gifs", "0", "--max-steps", "6",
            "--no-progress"]
    out = subprocess.run([*args, "--execution", "async", "--merge", "crossfade", "--delay-steps", "3",
                          "--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["policy"]["execution"]["merge"] == "crossfade" and report["policy"]["delay_steps"] == 3
    episode = report["episodes"][0]
    assert episode["idle_steps"] >= 3 and episode["gap_steps"] == 0
    assert {"spl", "idle_ratio", "jerk", "gap_steps"} <= set(report["overall"])
    for bad, message in ((["--delay-steps", "11"], "--delay-steps must be in 0..10"),
                         (["--delay-from-server"], "--delay-from-server needs --server")):
        out = subprocess.run([*args, *bad, "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=600)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
