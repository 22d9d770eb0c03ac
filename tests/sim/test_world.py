"""Simulator: the expert drives every scenario, the instruction is needed, worlds vary more than a key press."""

from __future__ import annotations

import numpy as np
import pytest

from dataclasses import replace

from robovlms_mobile.eval.closed_loop import expert_run
from robovlms_mobile.sim.expert import STOP_TAIL, ScriptedExpert, expert_episode, key_sequence
from robovlms_mobile.sim.render import render_frame
from robovlms_mobile.sim.scenarios import ALL_SCENARIOS, DEFAULT_SCENARIOS, build_world, mirror, parse_scenario, scenario_name
from robovlms_mobile.task import STEP_S
from robovlms_mobile.sim.world import LATTICE, SPEED, Box, RobotState, World, judge, step

SIZE = (36, 64)


@pytest.mark.parametrize("scenario", ALL_SCENARIOS, ids=scenario_name)
def test_expert_succeeds_everywhere(scenario):
    for seed in range(3):
        world = build_world(scenario, seed)
        ep = expert_episode(world, SIZE)
        assert ep.outcome.success and ep.outcome.final_error < 1e-6  # the goal is a lattice node of the start
        assert set(np.unique(ep.actions[:, :2])) <= set(np.float32([0.0, SPEED, -SPEED]))
        assert not ep.actions[:, 2].any()
        assert len(ep.actions) >= 18 and not ep.actions[0].any()
        assert not ep.actions[-STOP_TAIL:].any() and ep.actions[-STOP_TAIL - 1, :2].any()  # window + chunk - 1 stops
        assert np.sum(ep.actions[:, 1]) * STEP_S == pytest.approx(world.goal[1] - world.start[1], abs=1e-4)


@pytest.mark.parametrize("scenario", [s for s in ALL_SCENARIOS if s.side == "left"], ids=scenario_name)
def test_left_and_right_start_identical_then_differ(scenario):
    for seed in range(3):
        left, right = build_world(scenario, seed), build_world(mirror(scenario), seed)
        assert np.array_equal(render_frame(left, *left.start, (72, 128)), render_frame(right, *right.start, (72, 128)))
        assert left.boxes == right.boxes and left.room == right.room and left.distractors == right.distractors
        assert left.start == right.start and left.target[1] > right.target[1] and left.goal[1] >= right.goal[1]
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
        assert _replay(other, actions).reason in ("wrong_side", "missed_goal", "collision")


def test_collisions_stop_the_robot():
    world = build_world(parse_scenario("1box_left_medium"), 0)
    world = replace(world, distractors=(), start=(0.0, world.boxes[0].center[1]))  # straight at the box
    straight = _replay(world, [np.array([SPEED, 0.0])] * 20)
    assert straight.reason == "collision" and not straight.success
    state = RobotState(*world.start)
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
    state = RobotState(*world.start)
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



def test_worlds_vary_on_the_scale_of_key_presses():
    """Obstacle offset, distance, width, start and clutter vary by more than a 0.46 m key press between seeds."""
    worlds = [build_world(parse_scenario("1box_left_medium"), [0, k]) for k in range(16)]
    spread = lambda values: max(values) - min(values)
    assert spread([w.boxes[0].center[1] for w in worlds]) > 1.5 * LATTICE
    assert spread([w.boxes[0].x0 - w.start[0] for w in worlds]) > LATTICE
    assert spread([w.boxes[0].y1 - w.boxes[0].y0 for w in worlds]) > LATTICE
    assert spread([w.start[1] for w in worlds]) > LATTICE
    assert spread([w.target[0] - w.boxes[0].x1 for w in worlds]) > 2 * LATTICE
    assert len({len(w.distractors) for w in worlds}) >= 3
    # so the expert's key presses differ between worlds of one scenario
    assert len({expert_run(w)[1] for w in worlds}) >= 12


def test_ood_worlds_are_farther_than_any_training_world():
    iid = [build_world(sc, [0, k]) for sc in DEFAULT_SCENARIOS for k in range(2)]
    ood = [build_world(parse_scenario("2box_vert_left_close"), [3000, k], "ood") for k in range(4)]
    assert min(w.boxes[0].x0 - w.start[0] for w in ood) > max(w.boxes[0].x0 - w.start[0] for w in iid)
    assert all(w.worlds == "ood" and expert_episode(w, SIZE).outcome.success for w in ood)
    with pytest.raises(ValueError, match="worlds 'odd'"):
        build_world(DEFAULT_SCENARIOS[0], 0, "odd")


def test_objects_are_plain_values():
    """The captioner describes a frame from geometry alone: kind, position, size, colour of every object."""
    import json

    world = build_world(parse_scenario("2box_left_far"), [0, 3])
    objects = world.objects()
    assert [o["kind"] for o in objects] == ["box", "box"] + ["distractor"] * len(world.distractors) + ["bottle"]
    assert json.loads(json.dumps(objects)) == objects
    assert objects[-1]["position"] == [round(v, 4) for v in world.target]
    assert all(len(o["position"]) == 2 and len(o["size"]) == 3 and len(o["colour"]) == 3 for o in objects)


def test_key_sequence_text():
    actions = np.array([[0, 0], [SPEED, 0], [SPEED, SPEED], [0, -SPEED], [0, 0], [0, 0]])
    assert key_sequence(actions) == "F. FL .R"
    assert key_sequence(np.zeros((3, 2))) == ""


def test_the_expert_recovers_from_a_push():
    """Off its route (DART-style noise), the expert re-plans from where it is and still passes on its side."""
    world = build_world(parse_scenario("1box_right_far"), [0, 1])
    expert, state = ScriptedExpert(world), RobotState(*world.start)
    step(world, state, expert.act(state))
    step(world, state, np.array([0.0, 0.3]))  # pushed 0.12 m sideways
    for _ in range(40):
        step(world, state, expert.act(state))
    assert not state.collided and state.passed_side == "right"
    assert np.hypot(state.x - world.goal[0], state.y - world.goal[1]) < 0.3
