"""Seeded worlds: 1 or 2 boxes, clutter, a bottle hidden behind them, pass on the instructed side.

A scenario is the V4 file-name tag (`synthetic.Scenario`: boxes, layout, side, variant, distance);
the seed draws, continuously and on scales larger than a 0.46 m key press, the obstacles' lateral
offset, depth, width and gap, their distance (a range per distance tag), the start pose, the
bottle's position, 2-5 distractor objects, and the look: colours from a set, floor and wall
patterns, lighting. So the expert's key-press route changes with the geometry: one route replayed
does not solve other worlds, the camera has to be used.

Worlds built for the left and the right variant of the same scenario and seed differ only in
where the bottle and the goal are, and the bottle is hidden behind the obstacles from the start:
the first frames are identical, so only the instruction says which way to go.

Two distributions (`worlds`): "iid" (training and held-out evaluation) and "ood" (colours,
distances never drawn for "iid"; with the `vert` layout, which the training scenarios lack, it is
the out-of-distribution set `OOD_SCENARIOS`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from robovlms_mobile.data.format import instruction_for
from robovlms_mobile.data.format import DISTANCES, NAME_RE, SIDES, Scenario
from robovlms_mobile.sim.planner import plan_route
from robovlms_mobile.sim.world import LATTICE, ROBOT_RADIUS, STANDOFF, Box, World

DISTRIBUTIONS = ("iid", "ood")
FRONT = {"close": (0.9, 1.6), "medium": (1.6, 2.3), "far": (2.3, 3.0)}  # metres to the obstacles' front face (iid)
OOD_FRONT = {"close": (3.15, 3.4), "medium": (3.4, 3.65), "far": (3.65, 3.9)}  # OOD: farther than any iid world
START_BOX = (0.3, 0.4)  # the start pose varies by up to this much in x and y
LATERAL = 0.6  # the obstacle group's centre lies within +-LATERAL of the start line
BOTTLE_MARGIN = 0.03  # rad-ish (tan): the bottle stays this far inside the obstacles' silhouette at the start
MAX_DRAWS = 200  # redraws until a world both sides can be driven in (deterministic per seed)

# colour sets (RGB); "ood" shares none of them
COLOURS = {
    "iid": {"box": [(150, 100, 52), (178, 138, 88), (128, 122, 116), (152, 72, 56), (96, 106, 124)],
            "floor": [(135, 135, 142), (150, 126, 100), (112, 122, 110), (168, 164, 154)],
            "wall": [(205, 200, 185), (188, 198, 212), (212, 192, 170), (182, 182, 182)],
            "distractor": [(205, 62, 52), (62, 92, 182), (222, 202, 62), (86, 86, 92), (232, 232, 232)]},
    "ood": {"box": [(58, 152, 172), (172, 72, 162), (70, 150, 60)],
            "floor": [(92, 72, 112), (62, 92, 124)],
            "wall": [(122, 172, 132), (202, 152, 172)],
            "distractor": [(255, 140, 0), (0, 205, 205)]},
}
BOTTLE_RGB = (40, 165, 70)

# the default evaluation set: 1 box and 2 boxes side by side, both sides, three distances
DEFAULT_SCENARIOS = tuple(Scenario(n, "hori", side, "core", dist) for n in (1, 2) for dist in DISTANCES for side in SIDES)
OOD_SCENARIOS = tuple(Scenario(2, "vert", side, "core", dist) for dist in DISTANCES for side in SIDES)  # a layout never in training
ALL_SCENARIOS = DEFAULT_SCENARIOS + OOD_SCENARIOS


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


def _pick(rng: np.random.Generator, options: list, jitter: float = 14.0) -> np.ndarray:
    base = np.array(options[int(rng.integers(len(options)))], np.float32)
    return np.clip(base + rng.uniform(-jitter, jitter, 3), 0, 255)


def _palette(rng: np.random.Generator, worlds: str) -> dict:
    """Colours with the world's lighting baked in, and the floor / wall patterns."""
    c = COLOURS[worlds]
    light = rng.uniform(0.75, 1.15)
    wall, floor = _pick(rng, c["wall"]), _pick(rng, c["floor"])
    lit = lambda rgb: np.clip(np.asarray(rgb, np.float32) * light, 0, 255)
    return {"wall": lit(wall), "wall2": lit(wall * rng.uniform(0.8, 0.95)), "floor": lit(floor),
            "floor2": lit(floor * rng.uniform(0.8, 0.95)), "base": lit(_pick(rng, [(70, 65, 60)], 10)),
            "ceiling": lit(_pick(rng, [(225, 225, 228)], 8)), "bottle": lit(_pick(rng, [BOTTLE_RGB], 12)),
            "label": lit((235, 235, 235)), "cap": lit(_pick(rng, [(30, 60, 160)], 12)),
            "floor_pattern": int(rng.integers(3)), "floor_tile": float(rng.uniform(0.3, 0.8)),
            "wall_pattern": int(rng.integers(3)), "wall_panel": float(rng.uniform(0.4, 1.0)),
            "light": float(light), "side_shade": float(rng.uniform(0.55, 0.85))}


def _boxes(scenario: Scenario, rng: np.random.Generator, worlds: str, light: float) -> tuple[Box, ...]:
    depth, height = rng.uniform(0.3, 0.7), rng.uniform(0.42, 0.62)  # taller than the camera: the bottle hides
    yc = rng.uniform(-LATERAL, LATERAL)
    front = rng.uniform(*(OOD_FRONT if worlds == "ood" else FRONT)[scenario.distance])
    if scenario.n_boxes == 1:
        w = rng.uniform(0.4, 1.4)
        spans = [(yc - w / 2, yc + w / 2, 0.0, depth)]
    elif scenario.layout == "hori":  # side by side, a gap too narrow to drive through
        w1, w2, gap = rng.uniform(0.25, 0.7), rng.uniform(0.25, 0.7), rng.uniform(0.0, 0.12)
        spans = [(yc - gap / 2 - w1, yc - gap / 2, 0.0, depth), (yc + gap / 2, yc + gap / 2 + w2, 0.0, rng.uniform(0.3, 0.7))]
    else:  # one behind the other
        w1, w2, shift = rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0), rng.uniform(-0.2, 0.2)
        back = depth + rng.uniform(0.25, 0.5)
        spans = [(yc - w1 / 2, yc + w1 / 2, 0.0, depth), (yc + shift - w2 / 2, yc + shift + w2 / 2, back, back + rng.uniform(0.3, 0.6))]
    colours = [tuple(float(v) for v in np.clip(_pick(rng, COLOURS[worlds]["box"]) * light, 0, 255)) for _ in spans]
    return tuple(Box(front + x0, front + x1, a, b, height, colour) for (a, b, x0, x1), colour in zip(spans, colours))


def _hidden(boxes: tuple[Box, ...], start: tuple[float, float], tx: float, ty: float, radius: float) -> bool:
    """Whether the bottle at (tx, ty) lies, seen from `start`, inside the union of the boxes' front faces."""
    sx, sy = start
    spans = sorted(((b.y0 - sy) / (b.x0 - sx), (b.y1 - sy) / (b.x0 - sx)) for b in boxes)
    lo, hi = (ty - sy - radius) / (tx - sx - radius) - BOTTLE_MARGIN, (ty - sy + radius) / (tx - sx - radius) + BOTTLE_MARGIN
    reach = lo
    for a, b in spans:  # sorted by their left end: extend the covered run from lo while there is no gap
        if a > reach:
            break
        reach = max(reach, b)
    return reach >= hi


def _distractors(rng: np.random.Generator, worlds: str, light: float, room: tuple, keep_clear: list[tuple[float, float, float]],
                 boxes: tuple[Box, ...]) -> tuple[Box, ...]:
    """2-5 clutter objects (the first three in the corridor to the bottle), clear of the start, the goals, the bottles and the boxes."""
    x_min, x_max, y_min, y_max = room
    out: list[Box] = []
    for k in range(int(rng.integers(2, 6))):
        dx, dy, h = rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.35), rng.uniform(0.12, 0.5)
        colour = tuple(float(v) for v in np.clip(_pick(rng, COLOURS[worlds]["distractor"]) * light, 0, 255))
        for _ in range(20):
            x, y = rng.uniform(x_min + 0.1, x_max - 0.1 - dx), rng.uniform(y_min + 0.1, y_max - 0.1 - dy)
            if k < 3:  # the first three stand in the corridor from the start to the bottle, where a route may have to avoid them
                x, y = rng.uniform(0.6, max(0.7, x_max - 0.6 - dx)), rng.uniform(-1.3, 1.3 - dy)
            cx, cy = x + dx / 2, y + dy / 2
            if any(math.hypot(cx - px, cy - py) < r for px, py, r in keep_clear):
                continue
            if any(x < b.x1 + 0.5 and x + dx > b.x0 - 0.5 and y < b.y1 + 0.5 and y + dy > b.y0 - 0.5 for b in boxes + tuple(out)):
                continue
            out.append(Box(x, x + dx, y, y + dy, h, colour, "distractor"))
            break
    return tuple(out)


def _on_lattice(start: tuple[float, float], point: tuple[float, float]) -> tuple[float, float]:
    """The lattice node (key presses from `start`) nearest `point`."""
    return tuple(s + LATTICE * round((p - s) / LATTICE) for s, p in zip(start, point))


def build_world(scenario: Scenario | str, seed: int | list[int] = 0, worlds: str = "iid") -> World:
    """The world of one scenario and seed; every random draw is independent of the side."""
    if isinstance(scenario, str):
        scenario = parse_scenario(scenario)
    if worlds not in DISTRIBUTIONS:
        raise ValueError(f"worlds {worlds!r}: expected one of {', '.join(DISTRIBUTIONS)}")
    # the scenario (not its side) enters the seed: worlds of different scenarios are drawn independently
    tag = [scenario.n_boxes, ("hori", "vert").index(scenario.layout), DISTANCES.index(scenario.distance), DISTRIBUTIONS.index(worlds)]
    rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), *tag])
    for _ in range(MAX_DRAWS):
        world = _draw(scenario, rng, worlds)
        if world is not None:
            return world
    raise RuntimeError(f"no drivable world for {scenario_name(scenario)} seed {seed} in {MAX_DRAWS} draws")


def _draw(scenario: Scenario, rng: np.random.Generator, worlds: str) -> World | None:
    """One draw of every random quantity (in a fixed order); None when either side cannot be driven."""
    palette = _palette(rng, worlds)
    boxes = _boxes(scenario, rng, worlds, palette["light"])
    start = (float(rng.uniform(-START_BOX[0], START_BOX[0])), float(rng.uniform(-START_BOX[1], START_BOX[1])))
    back = max(b.x1 for b in boxes)
    y_lo, y_hi = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
    tx, dy = back + rng.uniform(0.7, 1.9), rng.uniform(0.05, 0.6)
    yc = (y_lo + y_hi) / 2
    targets = {side: (tx, yc + (dy if side == "left" else -dy)) for side in SIDES}
    room = (-0.6 + start[0] - rng.uniform(0.0, 0.3), tx + rng.uniform(0.5, 1.4),
            y_lo - rng.uniform(0.8, 1.5), y_hi + rng.uniform(0.8, 1.5))
    goals = {side: _on_lattice(start, (t[0] - STANDOFF, t[1])) for side, t in targets.items()}
    clear = [(*start, 0.6)] + [(*g, 0.5) for g in goals.values()] + [(*t, 0.35) for t in targets.values()]
    distractors = _distractors(rng, worlds, palette["light"], room, clear, boxes)
    if not all(_hidden(boxes, start, *t, 0.05) for t in targets.values()):
        return None
    built = {}
    for side in SIDES:
        world = World(boxes=boxes, target=targets[side], goal=goals[side], side=side,
                      instruction=instruction_for(scenario.n_boxes, side), room=room, palette=palette, start=start,
                      distractors=distractors, worlds=worlds)
        if world.collides(*goals[side]) or plan_route(world, start, goals[side], side) is None:
            return None
        built[side] = world
    return built[scenario.side]


def mirror(scenario: Scenario) -> Scenario:
    """The same scenario with the other side."""
    return replace(scenario, side="right" if scenario.side == "left" else "left")
