"""Grounded captions of simulator frames: what is in view and where, in Kosmos-2's grounding style.

A caption first names the instructed side (the first word after the prompt, so the prompt's last
position learns to carry it: the position the policy's action token reads from), then the robot's
next move (the scripted expert's key press, which depends on the instruction while the bottle is
hidden), then the box and the bottle: left / right / ahead, near / far, visible / hidden, each
with its bounding box as Kosmos-2 patch-index tokens on a 32x32 grid:
``left side; next move: forward left.<phrase> the box</phrase><object><patch_index_0390><patch_index_0629></object> is ahead, near. the bottle is hidden.``
"""

from __future__ import annotations

import numpy as np

from robovlms_mobile.sim.render import BOTTLE_BODY, BOTTLE_NECK, CAM_H, FOCAL, HORIZON
from robovlms_mobile.sim.world import STOP_SPEED, World

GRID = 32  # Kosmos-2 patch-index grid (1024 <patch_index_XXXX> tokens)
NEAR_M = 1.2  # an object closer than this (along x) is "near"


def _project(points: np.ndarray, x: float, y: float, size: tuple[int, int]) -> np.ndarray | None:
    """Pixel (row, col) of world points (n, 3) in front of the camera at (x, y); None if none is in front."""
    h, w = size
    depth = points[:, 0] - x
    points = points[depth > 0.05]
    if len(points) == 0:
        return None
    depth = points[:, 0] - x
    f = FOCAL * w
    col = w / 2 - (points[:, 1] - y) / depth * f
    row = HORIZON * h - (points[:, 2] - CAM_H) / depth * f
    return np.stack([row, col], axis=1)


def _bbox(pixels: np.ndarray | None, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """Clipped (r0, c0, r1, c1) of projected corners, None if outside the frame."""
    if pixels is None:
        return None
    h, w = size
    r0, c0 = np.clip(pixels.min(0), 0, [h - 1, w - 1])
    r1, c1 = np.clip(pixels.max(0), 0, [h - 1, w - 1])
    if r1 - r0 < 1 or c1 - c0 < 1:
        return None
    return float(r0), float(c0), float(r1), float(c1)


def patch_tokens(bbox: tuple[float, float, float, float], size: tuple[int, int]) -> str:
    """Kosmos-2 location tokens of a pixel box: top-left and bottom-right patch on the 32x32 grid."""
    h, w = size
    r0, c0, r1, c1 = bbox
    tl = int(r0 / h * GRID) * GRID + int(c0 / w * GRID)
    br = min(int(r1 / h * GRID), GRID - 1) * GRID + min(int(c1 / w * GRID), GRID - 1)
    return f"<object><patch_index_{tl:04d}><patch_index_{br:04d}></object>"


def _where(bbox: tuple[float, float, float, float], distance: float, w: int) -> str:
    centre = (bbox[1] + bbox[3]) / 2
    side = "on the left" if centre < w / 3 else "on the right" if centre > 2 * w / 3 else "ahead"
    return f"{side}, {'near' if distance < NEAR_M else 'far'}"


def _corners(x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
    return np.array([(a, b, c) for a in (x0, x1) for b in (y0, y1) for c in (0.0, z)], np.float64)


def bottle_visible(world: World, x: float, y: float, size: tuple[int, int]) -> bool:
    """Whether a ray from the camera to the bottle's centre or either edge passes no box (in plan) and is in the field of view."""
    tx, ty = world.target
    if tx - x <= 0.05 or abs(ty - y) / (tx - x) > 1 / (2 * FOCAL):
        return False
    for dy in (-BOTTLE_BODY[0], 0.0, BOTTLE_BODY[0]):
        end = np.array([tx, ty + dy])
        blocked = False
        for b in world.boxes:
            ts = np.linspace(0.0, 1.0, 64)[:, None]
            pts = np.array([x, y]) + ts * (end - np.array([x, y]))
            if np.any((pts[:, 0] > b.x0) & (pts[:, 0] < b.x1) & (pts[:, 1] > b.y0) & (pts[:, 1] < b.y1)):
                blocked = True
                break
        if not blocked:
            return True
    return False


def move_words(action: np.ndarray) -> str:
    """The key press as words: forward / left / right / forward left / ... / stop."""
    ax, ay = (float(v) for v in np.asarray(action)[:2])
    parts = []
    if ax > STOP_SPEED:
        parts.append("forward")
    elif ax < -STOP_SPEED:
        parts.append("backward")
    if ay > STOP_SPEED:
        parts.append("left")
    elif ay < -STOP_SPEED:
        parts.append("right")
    return " ".join(parts) or "stop"


def grounded_caption(world: World, x: float, y: float, action: np.ndarray, size: tuple[int, int]) -> str:
    """The caption of the frame seen from (x, y), with the next move ``action``."""
    h, w = size
    text = f" {world.side} side; next move: {move_words(action)}."
    x0 = min(b.x0 for b in world.boxes)
    corners = np.concatenate([_corners(b.x0, b.x1, b.y0, b.y1, b.h) for b in world.boxes])
    box = _bbox(_project(corners, x, y, size), size)
    noun = "the box" if len(world.boxes) == 1 else "the boxes"
    if box is None:
        text += " no box in view."
    else:
        text += f"<phrase> {noun}</phrase>{patch_tokens(box, size)} {'is' if len(world.boxes) == 1 else 'are'} {_where(box, x0 - x, w)}."
    tx, ty = world.target
    if bottle_visible(world, x, y, size):
        r = BOTTLE_BODY[0]
        bottle = _bbox(_project(_corners(tx - r, tx + r, ty - r, ty + r, BOTTLE_NECK[1]), x, y, size), size)
        if bottle is not None:
            return text + f"<phrase> the bottle</phrase>{patch_tokens(bottle, size)} is {_where(bottle, tx - x, w)}."
    return text + " the bottle is hidden."
