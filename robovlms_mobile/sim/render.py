"""numpy renderers: the robot's first-person camera (ray cast, with perspective) and a top-down map.

Boxes and distractors take their own colours; the floor and wall patterns and the lighting come
from the world's palette (sim/scenarios.py). The camera sits at the robot's centre, CAM_H above the floor, looking along +x. Every pixel's ray
is intersected with the floor, the walls, each box (slab test) and the bottle (two thin boxes);
the nearest hit colours the pixel, so occlusion and perspective are exact: near things are large
and low in the frame, left things are on the left.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from robovlms_mobile.sim.world import ROBOT_RADIUS, SUCCESS_RADIUS, World
from robovlms_mobile.task import FRAME_SIZE

CAM_H = 0.35  # camera height, m
WALL_H = 1.3
FOCAL = 0.55  # focal length as a fraction of the image width (~85 deg horizontal field of view)
HORIZON = 0.42  # horizon row as a fraction of the image height
BOTTLE_BODY = (0.05, 0.21)  # radius, height
BOTTLE_NECK = (0.02, 0.30)


@lru_cache(maxsize=8)
def _rays(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ray slopes (H, W): a = lateral (left +), b = vertical (up +), per metre of depth."""
    f = FOCAL * w
    a = (w / 2 - (np.arange(w) + 0.5)) / f
    b = (HORIZON * h - (np.arange(h) + 0.5)) / f
    return np.broadcast_to(a[None, :], (h, w)).astype(np.float64), np.broadcast_to(b[:, None], (h, w)).astype(np.float64)


def _slab(lo: float, hi: float, origin: float, slope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameter interval inside [lo, hi] along one axis (inf-safe for zero slopes)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - origin) / slope, (hi - origin) / slope
    inside = (lo <= origin) & (origin <= hi)
    flat = slope == 0
    t_min = np.where(flat, np.where(inside, -np.inf, np.inf), np.minimum(t0, t1))
    t_max = np.where(flat, np.where(inside, np.inf, -np.inf), np.maximum(t0, t1))
    return t_min, t_max


def _box_hit(x0, x1, y0, y1, z0, z1, cx, cy, a, b):
    """Entry depth (inf where missed) and entered face (0 front, 1 side, 2 top/bottom) of an AABB."""
    tx_min, tx_max = x0 - cx, x1 - cx  # the ray's x slope is 1
    ty_min, ty_max = _slab(y0, y1, cy, a)
    tz_min, tz_max = _slab(z0, z1, CAM_H, b)
    near = np.maximum(np.maximum(tx_min, ty_min), tz_min)
    far = np.minimum(np.minimum(tx_max, ty_max), tz_max)
    hit = (near <= far) & (near > 0.05)
    face = np.where(near == tx_min, 0, np.where(near == ty_min, 1, 2))
    return np.where(hit, near, np.inf), face


def render_frame(world: World, x: float, y: float, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """First-person RGB frame (H, W, 3) uint8 from the robot at (x, y)."""
    h, w = size
    a, b = _rays(h, w)
    pal = world.palette
    x_min, x_max, y_min, y_max = world.room
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(b < 0, CAM_H / -b, np.inf)
        t_side = np.where(a > 0, (y_max - y) / a, np.where(a < 0, (y_min - y) / a, np.inf))
    t_front = np.full((h, w), x_max - x)
    depth = np.minimum(np.minimum(t_floor, t_side), t_front)
    img = np.empty((h, w, 3), np.float32)

    # floor pattern in world coordinates (it slides past as the robot moves): tiles, stripes or speckle
    fx, fy = x + depth, y + depth * a
    size_m = pal["floor_tile"]
    pattern = pal["floor_pattern"]
    if pattern == 0:
        second = (np.floor(fx / size_m) + np.floor(fy / size_m)) % 2
    elif pattern == 1:
        second = np.floor(fx / size_m) % 2
    else:
        cell = np.floor(fx / 0.1) * 12.9898 + np.floor(fy / 0.1) * 78.233
        second = (np.sin(cell) * 43758.5453) % 1.0 > 0.6
    img[:] = np.where(second[..., None] > 0, pal["floor2"], pal["floor"])
    # walls: panels, stripes or plain; a dark skirting board, ceiling above WALL_H; side walls darker
    wall = (t_side < t_floor) | (t_front < t_floor)
    z = CAM_H + depth * b
    along = np.where(t_front <= t_side, fy, fx)
    if pal["wall_pattern"] == 0:
        band = np.floor(along / pal["wall_panel"]) % 2
    elif pal["wall_pattern"] == 1:
        band = np.floor(z / (0.25 * pal["wall_panel"])) % 2
    else:
        band = np.zeros_like(z)
    wall_rgb = np.where(band[..., None] > 0, pal["wall2"], pal["wall"])
    shade = np.where(t_front <= t_side, 1.0, 0.5 + 0.5 * pal["side_shade"])[..., None]
    img = np.where(wall[..., None], wall_rgb * shade, img)
    img = np.where((wall & (z < 0.08))[..., None], pal["base"], img)
    img = np.where((wall & (z > WALL_H))[..., None], pal["ceiling"], img)

    for box in world.boxes + world.distractors:
        t, face = _box_hit(box.x0, box.x1, box.y0, box.y1, 0.0, box.h, x, y, a, b)
        near = t < depth
        hy, hz = y + t * a, CAM_H + t * b
        front = np.asarray(box.colour, np.float32)
        top = np.clip(front * 1.2 + 10, 0, 255)
        colour = np.where((face == 0)[..., None], front, np.where((face == 1)[..., None], front * pal["side_shade"], top))
        if box.kind == "box":  # packing tape: a vertical strip and the top edge of the front face
            yc, half = (box.y0 + box.y1) / 2, (box.y1 - box.y0) / 2
            tape = (face == 0) & (np.abs(hy - yc) < 0.1 * half) | (face == 0) & (hz > box.h - 0.03)
            colour = np.where(tape[..., None], top, colour)
        img = np.where(near[..., None], colour, img)
        depth = np.minimum(depth, t)

    tx, ty = world.target
    for radius, height, kind in ((BOTTLE_BODY[0], BOTTLE_BODY[1], "body"), (BOTTLE_NECK[0], BOTTLE_NECK[1], "neck")):
        t, _ = _box_hit(tx - radius, tx + radius, ty - radius, ty + radius, 0.0, height, x, y, a, b)
        near = t < depth
        hz = CAM_H + t * b
        if kind == "body":
            colour = np.where(((hz > 0.07) & (hz < 0.14))[..., None], pal["label"], pal["bottle"])
        else:
            colour = np.where((hz > height - 0.03)[..., None], pal["cap"], pal["bottle"])
        img = np.where(near[..., None], colour, img)
        depth = np.minimum(depth, t)

    fog = np.clip(1.0 - 0.03 * np.minimum(depth, 12.0), 0.6, 1.0)[..., None]  # depth cue
    return np.clip(img * fog, 0, 255).astype(np.uint8)


def render_map(world: World, trail: list | np.ndarray = (), size: int = 144) -> np.ndarray:
    """Top-down map (size, size, 3) uint8: room, boxes, bottle, goal disc, the robot's trail and disc."""
    x_min, x_max, y_min, y_max = world.room
    scale = (size - 4) / max(x_max - x_min, y_max - y_min)
    img = np.full((size, size, 3), 40, np.uint8)

    def px(x: float, y: float) -> tuple[int, int]:  # +x up the image, +y to the left
        return int(size - 2 - (x - x_min) * scale), int(size / 2 - (y - (y_min + y_max) / 2) * scale)

    r0, c0 = px(x_max, y_max)
    r1, c1 = px(x_min, y_min)
    img[max(r0, 0):r1, max(c0, 0):c1] = (150, 150, 156)
    for box in world.boxes + world.distractors:
        r0, c0 = px(box.x1, box.y1)
        r1, c1 = px(box.x0, box.y0)
        img[max(r0, 0):r1 + 1, max(c0, 0):c1 + 1] = np.asarray(box.colour, np.uint8)
    rows, cols = np.mgrid[0:size, 0:size]

    def disc(x: float, y: float, radius: float, colour: tuple, ring: bool = False) -> None:
        r, c = px(x, y)
        d = np.hypot(rows - r, cols - c)
        mask = (np.abs(d - radius * scale) < 1.0) if ring else d <= max(radius * scale, 1.5)
        img[mask] = colour

    disc(*world.goal, SUCCESS_RADIUS, (240, 220, 60), ring=True)
    disc(*world.target, 0.06, (40, 165, 70))
    for (xa, ya), (xb, yb) in zip(list(trail)[:-1], list(trail)[1:]):
        for f in np.linspace(0, 1, 6):
            r, c = px(xa + f * (xb - xa), ya + f * (yb - ya))
            img[np.clip(r, 0, size - 1), np.clip(c, 0, size - 1)] = (220, 40, 40)
    if len(trail):
        disc(*trail[-1], ROBOT_RADIUS, (220, 40, 40), ring=True)
    return img
