"""Renderer: perspective (near is bigger and lower), left is left, the bottle shows once past the boxes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from robovlms_mobile.sim.expert import expert_episode
from robovlms_mobile.sim.render import render_frame, render_map
from robovlms_mobile.sim.scenarios import build_world, parse_scenario

SIZE = (72, 128)


def _mask(img: np.ndarray, colour: np.ndarray, tol: float = 30) -> np.ndarray:
    return np.abs(img.astype(np.float32) - colour).max(-1) < tol


def _clear(world):
    """The world without its clutter (so nothing stands between the camera and the box)."""
    return replace(world, distractors=())


def test_box_grows_and_drops_as_the_robot_approaches():
    world = _clear(build_world(parse_scenario("1box_left_far"), 0))
    yc = world.boxes[0].center[1]
    far, near = render_frame(world, 0.0, yc, SIZE), render_frame(world, 1.2, yc, SIZE)
    colour = np.array(world.boxes[0].colour)
    m_far, m_near = _mask(far, colour, 12), _mask(near, colour, 12)
    assert m_near.sum() > 2 * m_far.sum() > 0
    assert np.nonzero(m_near)[0].max() > np.nonzero(m_far)[0].max()  # its base is lower in the frame


def test_left_is_left():
    world = _clear(build_world(parse_scenario("1box_left_far"), 0))
    yc, colour = world.boxes[0].center[1], np.array(world.boxes[0].colour)
    view = render_frame(world, 0.0, yc - 0.8, SIZE)  # robot to the right of the box: box in the left half
    cols = np.nonzero(_mask(view, colour, 12))[1]
    assert cols.size and cols.mean() < SIZE[1] / 2
    view = render_frame(world, 0.0, yc + 0.8, SIZE)
    assert np.nonzero(_mask(view, colour, 12))[1].mean() > SIZE[1] / 2


def test_bottle_hidden_at_start_visible_at_goal():
    world = build_world(parse_scenario("1box_right_medium"), 3)
    start = render_frame(world, *world.start, SIZE)
    assert not _mask(start, world.palette["bottle"], 20).any()
    goal = render_frame(world, *world.goal, SIZE)
    bottle = _mask(goal, world.palette["bottle"], 20)
    assert bottle.sum() > 30 and abs(np.nonzero(bottle)[1].mean() - SIZE[1] / 2) < SIZE[1] / 4  # the goal is a lattice node
    no_bottle = replace(world, target=(world.room[1] + 5, 0.0))
    assert not np.array_equal(render_frame(no_bottle, *world.goal, SIZE), goal)


def test_frames_and_map_shapes():
    world = build_world(parse_scenario("2box_vert_left_close"), 0)
    ep = expert_episode(world, (36, 64))
    assert ep.images.shape[1:] == (36, 64, 3) and ep.images.dtype == np.uint8
    m = render_map(world, ep.trail, size=96)
    assert m.shape == (96, 96, 3) and (m == (220, 40, 40)).all(-1).any()


def test_the_look_varies_between_worlds():
    """Floor and wall patterns, lighting and colours are drawn per world; the OOD colours are a set of their own."""
    from robovlms_mobile.sim.scenarios import COLOURS

    worlds = [build_world(parse_scenario("1box_left_close"), [0, k]) for k in range(12)]
    assert len({w.palette["floor_pattern"] for w in worlds}) == 3 and len({w.palette["wall_pattern"] for w in worlds}) > 1
    assert max(w.palette["light"] for w in worlds) - min(w.palette["light"] for w in worlds) > 0.2
    starts = [render_frame(w, *w.start, (36, 64)).astype(float).mean() for w in worlds]
    assert max(starts) - min(starts) > 15
    for kind in ("box", "floor", "wall", "distractor"):
        assert not set(COLOURS["iid"][kind]) & set(COLOURS["ood"][kind])
