"""The chunk executor: alignment by the delay an answer had, merge policies, refusals, sync waiting."""

from __future__ import annotations

import numpy as np
import pytest

from robovlms_mobile.cli import options
from robovlms_mobile.runtime import executor as ex
from robovlms_mobile.runtime.chunking import StrategySpec
from robovlms_mobile.runtime.executor import AsyncExecutor, ExecutionSpec

N = 10


def chunk(base: float) -> np.ndarray:
    """(N, 2): step i is [base + i, -(base + i)], so every action names its own chunk and index."""
    v = base + np.arange(N, dtype=np.float64)
    return np.stack([v, -v], axis=1)


def two_answers(merge: str, frame_step: int, step: int, **kwargs) -> AsyncExecutor:
    """chunk(0) asked and answered at step 0, then chunk(100) asked on frame `frame_step` and answered at `step`."""
    e = AsyncExecutor(N, merge, **kwargs)
    e.receive(e.begin(0), chunk(0), 0)
    e.receive(e.begin(frame_step), chunk(100), step)
    return e


def test_cli_constants_match_the_runtime():
    assert options.EXECUTIONS == ex.EXECUTIONS and options.MERGES == ex.MERGES
    assert options.DEFAULT_CROSSFADE_STEPS == ex.DEFAULT_CROSSFADE_STEPS


def test_a_late_answer_drops_the_actions_executed_since_its_frame():
    e = AsyncExecutor(N)
    e.receive(e.begin(0), chunk(0), 0)
    late = e.begin(frame_step=0)
    for step in range(3):
        assert e.pop(step)[0] == step  # the first chunk drives while the second query is out
    assert e.receive(late, chunk(100), step=3)  # 3 actions executed since its frame: its actions 0..2 are past
    assert [s for s, _ in e.plan(3)] == list(range(3, N)) and e.horizon == N
    assert e.pop(3).tolist() == [103.0, -103.0]
    assert e.pop(5).tolist() == [105.0, -105.0]  # step 4 went by (the bridge's clock): gone, not executed late


def test_the_wait_for_the_first_answer_drops_nothing():
    e = AsyncExecutor(N)
    t = e.begin(0)
    assert e.pop(0) is None and e.pop(1) is None  # idle: the robot did not move
    assert e.receive(t, chunk(0), step=2)
    assert e.pop(2)[0] == 0 and e.horizon == 2 + N


@pytest.mark.parametrize("delay", range(0, N))
def test_no_idle_step_while_two_delays_fit_in_the_chunk(delay):
    """Query whenever none is in flight; each answer arrives `delay` steps after its frame.

    One query at a time (one model): the chunk from frame f must last until the next answer, at
    f + 2 * delay, so the queue never runs dry exactly when 2 * delay <= N.
    """
    e = AsyncExecutor(N, "latest")
    pending, idle, newest = [], 0, None
    for step in range(60):
        for _ in range(2):  # answers first, then a query (with no delay its answer comes at once)
            for _, t, c in [p for p in pending if p[0] == step]:
                assert e.receive(t, c, step)
                newest = t.frame_step
            pending = [p for p in pending if p[0] > step]
            if e.needs_query(step):
                pending.append((step + delay, e.begin(step), chunk(100 * step)))
        v = e.pop(step)
        if step >= delay:  # the first answer can only come at `delay`
            idle += v is None
            if 2 * delay <= N:  # the newest chunk's action for this very step (the first one started late)
                assert v[0] == 100 * newest + (step - newest) - (delay if newest == 0 else 0)
    assert (idle == 0) == (2 * delay <= N)


def test_a_delay_as_long_as_the_chunk_is_refused_and_the_queue_runs_dry():
    e = AsyncExecutor(N)
    assert e.receive(e.begin(0), chunk(0), step=0)
    late = e.begin(0)
    for step in range(N):
        e.pop(step)
    assert not e.receive(late, chunk(100), step=N)  # N actions executed since its frame: all of it is past
    assert e.refused[ex.PAST_HORIZON] == 1
    assert e.pop(N) is None  # nothing past the end of the newest accepted chunk


def test_answers_for_an_old_episode_and_out_of_order_are_refused():
    e = AsyncExecutor(N)
    old = e.begin(0)
    e.reset()
    assert not e.receive(old, chunk(0), step=1) and e.refused[ex.OLD_EPISODE] == 1
    first, second = e.begin(2), e.begin(3)
    assert e.receive(second, chunk(300), step=4)
    assert not e.receive(first, chunk(200), step=5) and e.refused[ex.OUT_OF_ORDER] == 1
    assert e.pop(5)[0] == 301  # the newer frame's plan stays


def test_the_queue_never_reaches_past_the_newest_chunk():
    e = two_answers("ensemble", frame_step=1, step=1)
    assert max(s for s, _ in e.plan(1)) == N  # horizon of b: 1 + N - 1


def test_ensemble_averages_the_overlap_with_act_weights():
    e = AsyncExecutor(N, "ensemble", ensemble_decay=0.5)
    e.receive(e.begin(0), chunk(0), 0)
    e.pop(0), e.pop(1)
    b = e.begin(2)
    e.pop(2)
    e.receive(b, chunk(100), 3)  # one action executed since its frame
    w = np.exp(-0.5 * np.arange(2))
    # step 3: chunk a's action 3 (oldest, weight 1) and chunk b's action 1 (weight e^-0.5)
    np.testing.assert_allclose(e.pop(3), (w[0] * chunk(0)[3] + w[1] * chunk(100)[1]) / w.sum())
    assert e.pop(N + 1)[0] == chunk(100)[N - 1][0]  # only b reaches this far


def test_crossfade_blends_linearly_then_follows_the_new_chunk():
    e = two_answers("crossfade", frame_step=2, step=2, crossfade_steps=3)
    for j, step in enumerate((2, 3, 4)):
        w = (j + 1) / 4
        np.testing.assert_allclose(e.pop(step), (1 - w) * chunk(0)[step] + w * chunk(100)[step - 2])
    np.testing.assert_allclose(e.pop(5), chunk(100)[3])


def test_latest_wins_replaces_the_queue():
    e = two_answers("latest", frame_step=2, step=4)
    assert e.pop(4)[0] == 102


def test_threshold_triggers_the_next_query():
    e = AsyncExecutor(N, threshold=4)
    t = e.begin(0)
    e.receive(t, chunk(0), 0)
    wanted = []
    for step in range(N):
        wanted.append(e.needs_query(step))
        e.pop(step)
    assert wanted.index(True) == N - 3  # steps N-3.. leave fewer than 4 queued


def test_sync_waits_idle_for_the_answer_and_executes_every_action_of_it():
    e = ExecutionSpec("sync", strategy=StrategySpec("reuse", reuse_steps=2)).build(N)
    assert e.needs_query(0)
    t = e.begin(0)
    assert e.pop(0) is None and e.pop(1) is None  # waiting: idle
    e.receive(t, chunk(0), 2)
    assert e.pop(2)[0] == 0 and e.pop(3)[0] == 1  # nothing dropped: the robot stood still
    assert e.needs_query(4)


@pytest.mark.parametrize("bad", [dict(execution="later"), dict(merge="newest"), dict(threshold=0),
                                 dict(crossfade_steps=0), dict(ensemble_decay=-1.0)])
def test_bad_specs_are_refused(bad):
    with pytest.raises(ValueError):
        ExecutionSpec(**bad)
    with pytest.raises(ValueError, match="threshold"):
        ExecutionSpec("async", threshold=N + 1).build(N)


def test_committed_actions_are_the_executed_and_queued_steps_from_the_frame_on():
    e = AsyncExecutor(N)
    assert e.committed(0, 5).shape == (0, 2)  # nothing queued yet: the first query is told nothing
    e.receive(e.begin(0), chunk(0), 0)
    assert e.pop(0)[0] == 0 and e.pop(1)[0] == 1
    e.advance(3)  # step 2 ran on the bridge's clock (executed, not popped)
    # a frame of step 1: steps 1, 2 were executed, 3, 4 are queued
    assert e.committed(1, 4)[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert e.committed(8, 5)[:, 0].tolist() == [8.0, 9.0]  # the queue ends at the chunk's horizon
    assert e.committed(3, 0).shape == (0, 2)
    e.reset()
    assert e.committed(0, 5).shape == (0, 2)  # a new episode owes nothing to the last


def test_sync_commits_nothing_while_it_waits():
    e = ExecutionSpec("sync", strategy=StrategySpec("receding")).build(N)
    e.receive(e.begin(0), chunk(0), 0)
    assert e.committed(0, 5).shape == (0, 2)
