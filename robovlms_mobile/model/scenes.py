"""Varied scenes for pretraining: random boxes, bottle, colours and camera poses, beyond one renderer look.

A real VLM has seen many scenes before anyone adapts it; the tiny backbone sees these. A scene is a
`sim.world.World` (so the simulator's renderer draws it) with 1-4 boxes of random size and place,
a bottle anywhere in front (hidden or in view), every surface colour drawn from the named
colours of `grounding.COLOURS` (walls, floor, each box, bottle), the simulator's floor/wall patterns
and lighting, plus a random room size. Poses are
drawn uniformly over the free floor, never from an expert's route. Nothing here knows an instruction.
"""

from __future__ import annotations

import numpy as np

from robovlms_mobile.model.grounding import COLOURS
from robovlms_mobile.sim.world import ROBOT_RADIUS, Box, World

SURFACE_COLOURS = tuple(COLOURS)  # every named colour may paint any surface


def _colour(rng: np.random.Generator, names: tuple[str, ...] = SURFACE_COLOURS, jitter: float = 18.0) -> np.ndarray:
    base = np.array(COLOURS[names[int(rng.integers(len(names)))]], np.float32)
    return np.clip(base + rng.uniform(-jitter, jitter, 3), 0, 255).astype(np.float32)


def random_palette(rng: np.random.Generator) -> dict:
    """The renderer's palette (patterns, lighting: `sim.scenarios._palette`) with walls, floor and bottle in random named colours."""
    from robovlms_mobile.sim.scenarios import _palette

    pal = _palette(rng, "iid")
    wall, floor = _colour(rng), _colour(rng)
    pal.update(wall=wall, wall2=wall * rng.uniform(0.8, 0.95), floor=floor, floor2=floor * rng.uniform(0.8, 0.95),
               bottle=_colour(rng))
    return pal


def random_scene(rng: np.random.Generator) -> World:
    """One random scene: 1-4 boxes (one random colour each) and a bottle in a room 4-7 m deep, random surfaces."""
    depth_m, half_w = rng.uniform(4.0, 7.0), rng.uniform(1.2, 2.2)
    boxes = []
    for _ in range(int(rng.integers(1, 5))):
        d, w, h = rng.uniform(0.2, 0.6), rng.uniform(0.2, 1.0), rng.uniform(0.2, 0.6)
        x0, yc = rng.uniform(0.8, depth_m - 1.0), rng.uniform(-half_w + 0.4, half_w - 0.4)
        boxes.append(Box(x0, x0 + d, yc - w / 2, yc + w / 2, h, colour=tuple(float(c) for c in _colour(rng))))
    target = (float(rng.uniform(1.0, depth_m - 0.4)), float(rng.uniform(-half_w + 0.3, half_w - 0.3)))
    room = (-0.8, depth_m, -half_w, half_w)
    return World(boxes=tuple(boxes), target=target, goal=target, side="left", instruction="", room=room,
                 palette=random_palette(rng))


def random_poses(world: World, rng: np.random.Generator, n: int) -> list[tuple[float, float]]:
    """`n` collision-free camera positions drawn uniformly between the back wall and the farthest object."""
    x_min, _, y_min, y_max = world.room
    x_far = max([b.x1 for b in world.boxes] + [world.target[0]])
    poses: list[tuple[float, float]] = []
    for _ in range(100 * n):
        if len(poses) == n:
            break
        x = float(rng.uniform(x_min + ROBOT_RADIUS, x_far))
        y = float(rng.uniform(y_min + ROBOT_RADIUS, y_max - ROBOT_RADIUS))
        if not world.collides(x, y):
            poses.append((x, y))
    return poses
