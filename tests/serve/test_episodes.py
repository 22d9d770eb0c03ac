"""EpisodeStore: bounded, least recently used evicted first, restart semantics."""

from __future__ import annotations

import pytest

from robovlms_mobile.serve.episodes import EPISODE_ID, EpisodeStore


def test_lru_eviction_and_recency():
    store = EpisodeStore(dict, capacity=2)
    store.start("a")
    store.start("b")
    assert store.get("a") is not None  # "a" becomes the most recently used
    store.start("c")  # evicts "b"
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None
    assert len(store) == 2 and store.evicted == 1


def test_start_restarts_with_fresh_state_and_generates_ids():
    store = EpisodeStore(lambda: {"n": 0}, capacity=4)
    _, state, restarted = store.start("a")
    state["n"] = 5
    _, again, restarted = store.start("a")
    assert restarted and again == {"n": 0} and store.get("a") is again
    new_id, _, restarted = store.start()
    assert not restarted and EPISODE_ID.match(new_id) and new_id != store.start()[0]


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match=">= 1"):
        EpisodeStore(dict, capacity=0)
