"""References that can succeed: nearest-episode replay, forward until blocked, image frozen; SPL; splits."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from robovlms_mobile.eval.closed_loop import EpisodeResult, evaluate_closed_loop, run_episode
from robovlms_mobile.eval.references import (ForwardUntilBlocked, FrozenImage, NearestReplay, read_training_episodes,
                                             training_keys)
from robovlms_mobile.sim.expert import expert_episode, write_expert_episodes
from robovlms_mobile.sim.scenarios import build_world, parse_scenario
from robovlms_mobile.sim.splits import TEST_SEED, VAL_SEED, check_data_seed, check_val_seed, split_of
from robovlms_mobile.sim.world import Box, SPEED

SIZE = (36, 64)
PAIR = [parse_scenario("1box_left_close"), parse_scenario("1box_right_close")]


def test_replay_of_its_own_world_succeeds_and_held_out_keys_are_counted(tmp_path):
    write_expert_episodes(tmp_path, 2, seed=0, frame_size=SIZE, scenarios=PAIR)
    episodes = read_training_episodes(tmp_path)
    assert [e[0] for e in episodes] == [build_world(sc, [0, 0]).instruction for sc in PAIR]
    replay = NearestReplay(episodes)
    for sc in PAIR:  # the training worlds themselves: the nearest first frame of the same instruction is their own
        fields, _ = run_episode(replay, build_world(sc, [0, 0]), frame_size=SIZE)
        assert fields["success"]
    keys = training_keys(episodes)
    report = evaluate_closed_loop(replay, PAIR, episodes=1, seed=0, frame_size=SIZE, train_keys=keys)
    assert report["overall"]["success_rate"] == 1.0
    assert report["seen_in_training"]["same_instruction"] == report["seen_in_training"]["any_instruction"] == 1.0
    held_out = evaluate_closed_loop(NearestReplay(episodes), PAIR, episodes=1, frame_size=SIZE, train_keys={})
    assert held_out["seen_in_training"]["same_instruction"] == 0.0 and held_out["settings"]["seed"] == TEST_SEED


def test_forward_reference_moves_and_can_succeed():
    world = build_world(PAIR[0], [TEST_SEED, 0])
    fields, _ = run_episode(ForwardUntilBlocked(), replace(world, distractors=()), frame_size=SIZE)
    assert fields["moved"]
    # a world whose goal lies straight ahead, the box off to the right (a left world): it stops at the goal
    gx = world.start[0] + 6 * 0.46
    clear = replace(world, distractors=(), boxes=(Box(1.0, 1.4, world.start[1] - 1.0, world.start[1] - 0.5, 0.5),),
                    target=(gx + 0.7, world.start[1]), goal=(gx, world.start[1]), room=(-1.0, gx + 2.0, -3.0, 3.0))
    fields, _ = run_episode(ForwardUntilBlocked(), clear, frame_size=SIZE)
    assert fields["moved"] and fields["success"], fields


class _Seen:
    def __init__(self):
        self.frames = []

    def reset(self):
        pass

    def act(self, frame, instruction):
        self.frames.append(frame)
        return np.array([SPEED, 0.0]) if len(self.frames) < 3 else np.zeros(2)


def test_image_frozen_shows_only_the_first_frame():
    inner = _Seen()
    frozen = FrozenImage(inner)
    frozen.reset()
    frames = [np.full((4, 4, 3), v, np.uint8) for v in (1, 2, 3)]
    for f in frames:
        frozen.act(f, "go")
    assert all(np.array_equal(f, frames[0]) for f in inner.frames)
    frozen.reset()
    frozen.act(frames[2], "go")
    assert np.array_equal(inner.frames[-1], frames[2])


def test_spl_known_answers():
    kw = dict(scenario="s", world_seed=[0, 0], reason="success", final_error=0.0, steps=5)
    assert EpisodeResult(success=True, path_length=4.0, expert_path_length=2.0, **kw).spl == 0.5
    assert EpisodeResult(success=True, path_length=1.5, expert_path_length=2.0, **kw).spl == 1.0  # max(path, expert)
    assert EpisodeResult(success=False, path_length=2.0, expert_path_length=2.0, **kw).spl == 0.0


def test_splits_are_disjoint_and_overlap_is_refused(tmp_path):
    assert {split_of(s) for s in (0, 999, TEST_SEED, VAL_SEED, 3000, 4000)} == {"data", "test", "val", "ood", "other"}
    assert check_val_seed(VAL_SEED) == VAL_SEED
    for bad in (TEST_SEED, 3):
        with pytest.raises(ValueError, match=r"'sim_eval.seed' = \d+ is a (test|data) world seed"):
            check_val_seed(bad)
    with pytest.raises(ValueError, match=r"seed = 1000: expected an integer in \[0, 1000\)"):
        check_data_seed(1000)
    with pytest.raises(ValueError, match="seed = 1000"):
        write_expert_episodes(tmp_path, 1, seed=1000)
    from robovlms_mobile.config.sim_eval import check_sim_eval
    from robovlms_mobile.eval.sim_eval_callback import SimEvalCallback

    with pytest.raises(ValueError, match="'sim_eval.seed' = 1000 is a test world seed"):
        check_sim_eval({"seed": 1000})
    assert SimEvalCallback(tmp_path).seed == VAL_SEED  # the default: validation, never the test worlds
