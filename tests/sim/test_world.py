"""Simulator: the expert drives every scenario, the instruction is needed, collisions and success are judged."""

from __future__ import annotations

import numpy as np
import pytest

from robovlms_mobile.sim.expert import STOP_TAIL, ScriptedExpert, expert_episode
from robovlms_mobile.sim.render import render_frame
from robovlms_mobile.sim.scenarios import ALL_SCENARIOS, DEFAULT_SCENARIOS, build_world, mirror, parse_scenario, scenario_name
from robovlms_mobile.sim.world import SPEED, Box, RobotState, World, judge, step

SIZE = (36, 64)


@pytest.mark.parametrize("scenario", ALL_SCENARIOS, ids=scenario_name)
def test_expert_succeeds_everywhere(scenario):
    for seed in range(3):
        ep = expert_episode(build_world(scenario, seed), SIZE)
        assert ep.outcome.success and ep.outcome.final_error < 0.15 * 2**0.5  # its start offset
        assert set(np.unique(ep.actions[:, :2])) <= set(np.float32([0.0, SPEED, -SPEED]))
        assert not ep.actions[:, 2].any()
        assert len(ep.actions) >= 18 and not ep.actions[0].any()
        assert not ep.actions[-STOP_TAIL:].any() and ep.actions[-STOP_TAIL - 1, :2].any()  # window + chunk - 1 stops
        lateral = ep.actions[:, 1].sum()
        assert np.sign(lateral) == (1 if scenario.side == "left" else -1)  # ends one step towards the side


@pytest.mark.parametrize("scenario", [s for s in ALL_SCENARIOS if s.side == "left"], ids=scenario_name)
def test_left_and_right_start_identical_then_differ(scenario):
    for seed in range(3):
        left, right = build_world(scenario, seed), build_world(mirror(scenario), seed)
        assert np.array_equal(render_frame(left, 0, 0, (72, 128)), render_frame(right, 0, 0, (72, 128)))
        assert left.boxes == right.boxes and left.room == right.room
        assert left.goal[1] == -right.goal[1] > 0
    ep_l = expert_episode(left, SIZE)
    ep_r = expert_episode(right, SIZE)
    assert np.array_equal(ep_l.images[:2], ep_r.images[:2])
    assert not np.array_equal(ep_l.images[-1], ep_r.images[-1])


def _replay(world: World, actions: np.ndarray):
    state = RobotState(*world.start)
    for a in actions:
        step(world, state, a)
        if state.collided:
            break
    return judge(world, state, stopped=True, steps=len(actions))


def test_same_actions_fail_the_mirrored_scenario():
    """A policy that does the same thing whatever the instruction fails half the scenarios."""
    for scenario in DEFAULT_SCENARIOS:
        world, other = build_world(scenario, 5), build_world(mirror(scenario), 5)
        actions = expert_episode(world, SIZE).actions[:, :2]
        assert _replay(world, actions).success
        assert _replay(other, actions).reason in ("wrong_side", "missed_goal")


def test_collisions_stop_the_robot():
    world = build_world(parse_scenario("1box_left_medium"), 0)
    straight = _replay(world, [np.array([SPEED, 0.0])] * 20)
    assert straight.reason == "collision" and not straight.success
    state = RobotState(0.0, 0.0)
    for _ in range(20):
        step(world, state, np.array([SPEED, 0.0]))
    assert state.collided and state.x + 0.2 <= world.boxes[0].x0 + 1e-9  # stopped at the contact, not inside
    side = _replay(world, [np.array([0.0, -SPEED])] * 20)  # into the right wall
    assert side.reason == "collision"


def test_outcomes():
    world = build_world(parse_scenario("1box_right_close"), 1)
    assert _replay(world, []).reason == "missed_goal"
    state = RobotState(0.0, 0.0)
    assert judge(world, state, stopped=False, steps=40).reason == "timeout"
    expert = ScriptedExpert(world)
    state = RobotState(0.0, 0.0)
    for _ in range(40):
        step(world, state, expert.act(state))
    assert state.passed_side == "right" and judge(world, state, True, 40).success


def test_velocity_is_clipped_and_deterministic():
    world = build_world(parse_scenario("1box_left_far"), 2)
    a, b = RobotState(0.0, 0.0), RobotState(0.0, 0.0)
    step(world, a, np.array([10.0, 0.0]))
    step(world, b, np.array([SPEED, 0.0]))
    assert a.x == b.x == pytest.approx(SPEED * 0.4)
    assert np.array_equal(expert_episode(world, SIZE).images, expert_episode(build_world(parse_scenario("1box_left_far"), 2), SIZE).images)


def test_scenario_names():
    assert scenario_name(parse_scenario("1box_left_close")) == "1box_left_close"
    assert parse_scenario("2box_vert_right_core_far").layout == "vert"
    assert parse_scenario("2box_right_far").layout == "hori"
    with pytest.raises(ValueError, match="expected e.g."):
        parse_scenario("3box_left_close")
    assert len({scenario_name(s) for s in ALL_SCENARIOS}) == 18


def test_wall_and_obstacle_boxes_never_overlap_the_route():
    for scenario in ALL_SCENARIOS:
        world = build_world(scenario, 0)
        assert all(isinstance(b, Box) and b.h > 0.35 for b in world.boxes)  # taller than the camera
        assert world.room[1] > world.target[0] > world.goal[0]

