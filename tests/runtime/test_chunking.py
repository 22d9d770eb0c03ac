"""Chunk strategies: receding horizon, chunk reuse, temporal ensembling (ACT weights), reset."""

from __future__ import annotations

import numpy as np
import pytest

from robovlms_mobile.runtime.chunking import ChunkReuse, RecedingHorizon, StrategySpec, TemporalEnsemble

N = 4


def chunk(query: int) -> np.ndarray:
    """A recognisable chunk: step i of query q is [q, i]."""
    return np.stack([np.full(N, float(query)), np.arange(N, dtype=float)], axis=1)  # (N, 2)


def run(strategy, ticks: int) -> tuple[list[np.ndarray], list[bool]]:
    actions, queried, q = [], [], 0
    for _ in range(ticks):
        need = strategy.needs_query()
        queried.append(need)
        if need:
            strategy.update(chunk(q))
            q += 1
        actions.append(strategy.action())
    return actions, queried


def test_receding_horizon_executes_first_step_of_every_query():
    actions, queried = run(RecedingHorizon(N), 5)
    assert queried == [True] * 5
    assert [a.tolist() for a in actions] == [[q, 0] for q in range(5)]


def test_chunk_reuse_executes_k_steps_per_query():
    actions, queried = run(ChunkReuse(N, steps=3), 7)
    assert queried == [True, False, False, True, False, False, True]
    assert [a.tolist() for a in actions] == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 0]]


def test_chunk_reuse_whole_chunk_and_limits():
    _, queried = run(ChunkReuse(N, steps=N), 9)
    assert queried == [True, False, False, False] * 2 + [True]
    for bad in (0, N + 1):
        with pytest.raises(ValueError, match="reuse steps must be in 1..4"):
            ChunkReuse(N, steps=bad)


def test_temporal_ensemble_matches_act_weights():
    decay = 0.5
    strategy = TemporalEnsemble(N, decay=decay)
    actions, queried = run(strategy, 6)
    assert queried == [True] * 6
    for t, action in enumerate(actions):
        # chunks queried at q = max(0, t-N+1) .. t each predict tick t with their step t - q; oldest weight exp(0)
        qs = list(range(max(0, t - N + 1), t + 1))
        preds = np.array([chunk(q)[t - q] for q in qs])
        w = np.exp(-decay * np.arange(len(qs)))
        np.testing.assert_allclose(action, (w[:, None] * preds).sum(0) / w.sum())
    # after tick 5, only the chunks queried at ticks 3..5 still predict a future tick (N = 4)
    assert [age for age, _ in strategy._chunks] == [3, 2, 1]


def test_temporal_ensemble_decay_zero_is_plain_mean():
    actions, _ = run(TemporalEnsemble(N, decay=0.0), 3)
    np.testing.assert_allclose(actions[2], [(0 + 1 + 2) / 3, (2 + 1 + 0) / 3])


@pytest.mark.parametrize("make", [lambda: RecedingHorizon(N), lambda: ChunkReuse(N, 2), lambda: TemporalEnsemble(N)])
def test_reset_forgets_chunks(make):
    strategy = make()
    run(strategy, 3)
    strategy.reset()
    assert strategy.needs_query()
    with pytest.raises(RuntimeError):
        strategy.action()


def test_wrong_chunk_shape_is_refused():
    with pytest.raises(ValueError, match=r"shape \(4, d\)"):
        RecedingHorizon(N).update(np.zeros((5, 2)))


def test_spec_builds_fresh_instances_and_rejects_unknown():
    spec = StrategySpec("reuse", reuse_steps=2)
    a, b = spec.build(N), spec.build(N)
    assert isinstance(a, ChunkReuse) and a is not b and a.steps == 2
    assert spec.describe() == {"name": "reuse", "reuse_steps": 2}
    assert StrategySpec("ensemble", ensemble_decay=0.1).describe() == {"name": "ensemble", "ensemble_decay": 0.1}
    with pytest.raises(ValueError, match="unknown chunk strategy 'act'"):
        StrategySpec("act").build(N)
    with pytest.raises(ValueError, match="finite number >= 0"):
        StrategySpec("ensemble", ensemble_decay=-1).build(N)
