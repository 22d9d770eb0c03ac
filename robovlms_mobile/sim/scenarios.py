"""Seeded scenarios: 1 or 2 boxes, bottle hidden behind them, pass on the instructed side.

A scenario is the V4 file-name tag (`synthetic.Scenario`: boxes, layout, side, variant,
distance); the seed draws sizes, positions and colours. Worlds built for the left and the right
variant of the same scenario and seed differ only in where the bottle and the goal are, and the
bottle is hidden behind the obstacle from the start pose: the first frames are identical, so only
the instruction says which way to go, and a policy that ignores it fails half the scenarios.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from robovlms_mobile.data.format import instruction_for
from robovlms_mobile.data.format import DISTANCES, NAME_RE, SIDES, Scenario
from robovlms_mobile.sim.world import LATTICE, ROBOT_RADIUS, STANDOFF, Box, World

APPROACH_STEPS = {"close": 1, "medium": 2, "far": 3}  # key presses straight ahead before the detour
START_JITTER = 0.15  # the start pose varies by up to this much per axis: the expert then stops off the lattice goal
CLEARANCE = 0.05 + START_JITTER  # metres kept between the robot disc and a box by the expert's lattice route
BOTTLE_MARGIN = 0.04  # rad: the bottle stays this far inside the obstacle's silhouette at the start

# the default evaluation set: 1 box and 2 boxes side by side, both sides, three distances
DEFAULT_SCENARIOS = tuple(Scenario(n, "hori", side, "core", dist) for n in (1, 2) for dist in DISTANCES for side in SIDES)
ALL_SCENARIOS = DEFAULT_SCENARIOS + tuple(Scenario(2, "vert", side, "core", dist) for dist in DISTANCES for side in SIDES)


def parse_scenario(name: str) -> Scenario:
    """`1box_left_close`, `2box_vert_right_far` or a full V4 tag `1box_hori_left_core_close`."""
    m = NAME_RE.fullmatch(name.strip())
    if m is None or m["distance"] is None:
        raise ValueError(f"scenario {name!r}: expected e.g. 1box_left_close, 2box_vert_right_far "
                         f"(boxes 1|2, layout hori|vert, side left|right, distance close|medium|far)")
    return Scenario(int(m["boxes"][0]), m["layout"] or "hori", m["side"], m["variant"] or "core", m["distance"])


def scenario_name(sc: Scenario) -> str:
    """Short name: `1box_left_close`, `2box_hori_left_far`, `2box_vert_right_medium`."""
    layout = "" if sc.n_boxes == 1 else f"_{sc.layout}"
    return f"{sc.n_boxes}box{layout}_{sc.side}_{sc.distance}"


def _lattice_up(value: float) -> float:
    return LATTICE * math.ceil(value / LATTICE - 1e-9)


def detour_waypoints(boxes: tuple[Box, ...], side: str) -> list[tuple[float, float]]:
    """Lattice waypoints from (0, 0) around the boxes on `side`, ending one step towards it.

    A robot starting within START_JITTER of (0, 0) and moving in whole key presses reaches each
    waypoint up to its own start offset; CLEARANCE covers that offset.
    """
    s = 1.0 if side == "left" else -1.0
    front = min(b.x0 for b in boxes)
    back = max(b.x1 for b in boxes)
    half = max(b.y1 for b in boxes) if s > 0 else -min(b.y0 for b in boxes)  # extent towards `side`
    n_out = math.ceil((half + ROBOT_RADIUS + CLEARANCE) / LATTICE - 1e-9)
    # start the diagonal late enough to be close, early enough that the disc clears the front face
    x_a = LATTICE * math.floor((front - half - 2 * ROBOT_RADIUS - CLEARANCE) / LATTICE + 1e-9)
    x_o = x_a + n_out * LATTICE
    x_p = max(x_o, _lattice_up(back + ROBOT_RADIUS + CLEARANCE))
    y_pass = s * n_out * LATTICE
    return [(x_a, 0.0), (x_o, y_pass), (x_p, y_pass), (x_p + (n_out - 1) * LATTICE, s * LATTICE)]


def _palette(rng: np.random.Generator) -> dict[str, np.ndarray]:
    def jit(rgb: tuple, a: float = 12) -> np.ndarray:
        return np.clip(np.array(rgb, np.float32) + rng.uniform(-a, a, 3), 0, 255)

    return {"wall": jit((205, 200, 185)), "floor": jit((135, 135, 142)), "base": jit((70, 65, 60), 8),
            "box": jit((150, 100, 52)), "box_side": jit((105, 68, 35), 8), "tape": jit((196, 170, 120), 8),
            "bottle": jit((40, 165, 70)), "label": np.array([235, 235, 235], np.float32), "cap": jit((30, 60, 160), 10),
            "ceiling": jit((225, 225, 228), 6)}


def _boxes(scenario: Scenario, rng: np.random.Generator) -> tuple[Box, ...]:
    depth, height = 0.45 * rng.uniform(0.94, 1.06), 0.45 * rng.uniform(0.94, 1.06)
    y0 = rng.uniform(-0.05, 0.05)
    if scenario.n_boxes == 1:
        width = 0.8 * rng.uniform(0.94, 1.06)
        spans = [(y0 - width / 2, y0 + width / 2, 0.0)]
    elif scenario.layout == "hori":
        width = 0.6 * rng.uniform(0.94, 1.06)
        spans = [(y0 - width - 0.03, y0 - 0.03, 0.0), (y0 + 0.03, y0 + width + 0.03, 0.0)]
    else:
        width = 0.8 * rng.uniform(0.94, 1.06)
        spans = [(y0 - width / 2, y0 + width / 2, 0.0), (y0 - width / 2, y0 + width / 2, depth + 0.3)]
    half = max(max(abs(a), abs(b)) for a, b, _ in spans)
    front = APPROACH_STEPS[scenario.distance] * LATTICE + half + 2 * ROBOT_RADIUS + CLEARANCE + rng.uniform(0.02, 0.08)
    return tuple(Box(front + dx, front + dx + depth, a, b, height) for a, b, dx in spans)


def _hidden(boxes: tuple[Box, ...], tx: float, ty: float, radius: float) -> bool:
    """Whether the bottle at (tx, ty) lies inside the front box's silhouette seen from the start, on both sides."""
    x0 = min(b.x0 for b in boxes)
    face = [b for b in boxes if b.x0 < x0 + 1e-6]  # the front faces (two for boxes side by side)
    reach = min(max(b.y1 for b in face), -min(b.y0 for b in face)) / x0  # narrower side: left and right agree
    return (abs(ty) + radius) / (tx - radius) < reach - BOTTLE_MARGIN


def build_world(scenario: Scenario, seed: int | list[int] = 0) -> World:
    """The world of one scenario and seed; every random draw is independent of the side."""
    if isinstance(scenario, str):
        scenario = parse_scenario(scenario)
    rng = np.random.default_rng(seed)
    palette = _palette(rng)
    boxes = _boxes(scenario, rng)
    t_dx, t_dy, wall_gap, room_pad = rng.uniform(0.0, 0.05), rng.uniform(-0.03, 0.03), rng.uniform(0.8, 1.4), rng.uniform(0.5, 0.9)
    start = tuple(float(v) for v in rng.uniform(-START_JITTER, START_JITTER, 2))
    # the widest detour of either side fixes the room, so left and right rooms are the same
    routes = {side: detour_waypoints(boxes, side) for side in SIDES}
    last = routes[scenario.side][-1]
    x_far = max(r[-1][0] for r in routes.values())
    n_b = 1
    while not _hidden(boxes, x_far + n_b * LATTICE + STANDOFF + 0.05, LATTICE + 0.03, 0.05):
        n_b += 1
    goal = (x_far + n_b * LATTICE, last[1])
    target = (goal[0] + STANDOFF + t_dx, goal[1] + t_dy)
    y_half = max(abs(p[1]) for r in routes.values() for p in r) + ROBOT_RADIUS + room_pad
    room = (-0.6, goal[0] + STANDOFF + 0.05 + wall_gap, -y_half, y_half)
    return World(boxes=boxes, target=target, goal=goal, side=scenario.side,
                 instruction=instruction_for(scenario.n_boxes, scenario.side), room=room, palette=palette, start=start)


def mirror(scenario: Scenario) -> Scenario:
    """The same scenario with the other side."""
    return replace(scenario, side="right" if scenario.side == "left" else "left")
