"""Procedurally drawn mobile-robot episodes in the robot's exact V4 / V5 HDF5 formats.

Stand-in data for demos and tests (no simulator): a scripted keyboard-style plan drives a
holonomic base around one or two boxes to a bottle; frames are drawn with numpy from the
integrated 2-D pose (0.4 s per step). Format facts: spec/mobile-vla.md section 4.

Properties the rest of the project may rely on:
- actions are ``[linear_x, linear_y, angular_z]`` float32, linear values in {0, +-1.15}; frame 0 is
  the ``episode_start`` frame (action zero), the plan ends with stop (zero) steps;
- the robot ends one lateral step (0.46 m) towards ``side``, so ``sum(linear_y)`` has the sign of
  the side (+ left, - right);
- a left/right pair generated side by side (same scenario otherwise) shares its seeded variation:
  its first frames are identical (the bottle is hidden behind the box), so only the instruction
  tells the two apart at the start.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from robovlms_mobile.data.format import V4_SCENARIOS, Scenario, instruction_for
from robovlms_mobile.data.writers import event_types_for, write_episode_v4, write_episode_v5
from robovlms_mobile.data.kinematics import integrate
from robovlms_mobile.outputs import check_folder, claim, written
from robovlms_mobile.task import FRAME_SIZE, MAX_SPEED as SPEED
from robovlms_mobile.task import STEP_S

TURN = 0.2  # V5 angular_z magnitude
_APPROACH = {"close": 1, "medium": 2, "far": 4}  # forward steps before the detour
_CAM_H, _BOX_W, _BOX_H, _BOX_D = 0.35, 0.6, 0.45, 0.45  # metres


class SyntheticEpisode(NamedTuple):
    """Arrays of one generated episode."""

    scenario: Scenario
    images: np.ndarray  # (T, H, W, 3) uint8 RGB
    actions: np.ndarray  # (T, 3) float32
    poses: np.ndarray  # (T, 3) float64 [x, y, heading] before each action


def plan_actions(scenario: Scenario, rng: np.random.Generator, length: int = 18,
                 generation: str = "v4") -> tuple[np.ndarray, float]:
    """Scripted key-press plan (length, 3) float32 and the x-offset of the pass's middle."""
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    s = 1.0 if scenario.side == "left" else -1.0
    two_hori = scenario.n_boxes == 2 and scenario.layout == "hori"
    two_vert = scenario.n_boxes == 2 and scenario.layout == "vert"
    n_a, n_b = _APPROACH[scenario.distance], 2 + int(rng.integers(0, 2))
    n_diag = 3 if two_hori else 2  # diagonal steps out
    n_side = 1 if scenario.variant == "variant" else 0  # pure sidestep before the diagonals
    n_pass = 2 if two_hori else 4 if two_vert else 3
    n_back = n_side + n_diag - 1  # ends one lateral step towards `side`
    excess = 1 + n_a + n_side + n_diag + n_pass + n_back + n_b + 1 - length
    cut_a = min(max(excess, 0), n_a - 1)  # truncate the forward approach first
    n_a, excess = n_a - cut_a, excess - cut_a
    n_b -= min(max(excess, 0), n_b - 1)
    f, z = (SPEED, 0.0, 0.0), (0.0, 0.0, 0.0)
    rows = ([z] + [f] * n_a + [(0.0, s * SPEED, 0.0)] * n_side + [(SPEED, s * SPEED, 0.0)] * n_diag
            + [f] * n_pass + [(SPEED, -s * SPEED, 0.0)] * n_back + [f] * n_b)[: length - 1]
    actions = np.array(rows + [z] * (length - len(rows)), np.float32)
    if generation == "v5" and rng.random() < 0.5:  # occasional turn, undone on a later forward step
        fwd = np.flatnonzero((actions[:, 0] != 0) & (actions[:, 1] == 0))
        if len(fwd) >= 2:
            i, j = np.sort(rng.choice(fwd, 2, replace=False))
            sign = rng.choice([-1.0, 1.0])
            actions[i, 2], actions[j, 2] = sign * TURN, -sign * TURN
    x_pass_mid = (n_a + n_diag + n_pass / 2) * SPEED * STEP_S  # rotations ignored: tiny
    return actions, x_pass_mid


def _fill(img: np.ndarray, u0: float, u1: float, v0: float, v1: float, color: np.ndarray) -> None:
    h, w = img.shape[:2]
    a, b = max(int(np.floor(v0)), 0), min(int(np.ceil(v1)), h)
    c, d = max(int(np.floor(u0)), 0), min(int(np.ceil(u1)), w)
    if a < b and c < d:
        img[a:b, c:d] = color


def _render(poses: np.ndarray, objects: list[tuple], wall_x: float, pal: dict, size: tuple[int, int]) -> np.ndarray:
    """Draw (T, H, W, 3) uint8 RGB frames: wall with panels, striped floor, boxes, bottle."""
    h, w = size
    f, cx, hz = 0.55 * w, w / 2, 0.42 * h
    rows, ang = np.arange(h) + 0.5, np.arctan((cx - (np.arange(w) + 0.5)) / f)
    depth = f * _CAM_H / np.maximum(rows - hz, 1e-3)  # floor distance per row
    floor_shade = (0.75 + 0.25 * np.clip(1.0 - depth / 8.0, 0, 1))[:, None]
    wall_shade = (1.0 - 0.15 * rows / h)[:, None, None]
    out = np.empty((len(poses), h, w, 3), np.uint8)
    for t, (x, y, th) in enumerate(poses):
        img = out[t]
        dist = max(wall_x - x, 0.3)
        v_wall = int(np.clip(round(hz + f * _CAM_H / dist), 0, h))
        panel = (np.floor((y + dist * np.tan(np.clip(ang + th, -1.4, 1.4))) / 0.7) % 2)[:, None]
        img[:v_wall] = (wall_shade[:v_wall] * (pal["wall"] * (0.9 + 0.1 * panel))[None]).astype(np.uint8)
        stripe = (np.floor((depth + x) / 0.5) % 2)[:, None]
        img[v_wall:] = (pal["floor"] * floor_shade * (0.9 + 0.1 * stripe))[v_wall:, None].astype(np.uint8)
        _fill(img, 0, w, v_wall - max(1.0, f * 0.06 / dist), v_wall, pal["base"])
        c, s = np.cos(th), np.sin(th)
        rel = [(c * (ox - x) + s * (oy - y), -s * (ox - x) + c * (oy - y), kind, ow, oh)
               for ox, oy, kind, ow, oh in objects]
        for dx, dy, kind, ow, oh in sorted(rel, key=lambda r: -r[0]):  # far to near
            if kind == "box":
                xf, xb = dx - _BOX_D / 2, dx + _BOX_D / 2
                if xf < 0.3:
                    continue
                edge = dy + ow / 2 if dy < 0 else dy - ow / 2  # inner vertical edge faces the camera
                if abs(dy) > ow / 2:  # side face visible
                    uf, ub = cx - f * edge / xf, cx - f * edge / xb
                    v0, v1 = hz + f * (_CAM_H - oh) / xb, hz + f * _CAM_H / xb
                    _fill(img, min(uf, ub), max(uf, ub), v0, v1, pal["box_side"])
                u, hw_ = cx - f * dy / xf, f * ow / 2 / xf
                top, bot = hz + f * (_CAM_H - oh) / xf, hz + f * _CAM_H / xf
                _fill(img, u - hw_, u + hw_, top, bot, pal["box"])
                _fill(img, u - hw_ * 0.12, u + hw_ * 0.12, top, bot, pal["tape"])
                _fill(img, u - hw_, u + hw_, top, top + (bot - top) * 0.06, pal["box_side"])
            elif dx >= 0.3:  # bottle: body, label, neck, cap
                u, k = cx - f * dy / dx, f / dx
                bot = hz + k * _CAM_H
                _fill(img, u - k * ow / 2, u + k * ow / 2, bot - k * oh * 0.75, bot, pal["bottle"])
                _fill(img, u - k * ow / 2, u + k * ow / 2, bot - k * oh * 0.5, bot - k * oh * 0.3, pal["label"])
                _fill(img, u - k * ow / 5, u + k * ow / 5, bot - k * oh * 0.95, bot - k * oh * 0.75, pal["bottle"])
                _fill(img, u - k * ow / 5, u + k * ow / 5, bot - k * oh, bot - k * oh * 0.95, pal["cap"])
    return out


def make_episode(scenario: Scenario, *, seed: int | Sequence[int] = 0, frame_size: tuple[int, int] = FRAME_SIZE,
                 length: int = 18, generation: str = "v4") -> SyntheticEpisode:
    """Plan, integrate and draw one episode; seeded variation depends on `seed` only, not on side."""
    if generation not in ("v4", "v5"):
        raise ValueError(f"generation must be 'v4' or 'v5', got {generation!r}")
    rng = np.random.default_rng(seed)

    def jit(rgb: tuple, a: float = 12) -> np.ndarray:
        return np.clip(np.array(rgb, np.float32) + rng.uniform(-a, a, 3), 0, 255)

    pal = {"wall": jit((205, 200, 185)), "floor": jit((135, 135, 142)), "base": jit((70, 65, 60), 8),
           "box": jit((150, 100, 52)), "box_side": jit((105, 68, 35), 8), "tape": jit((196, 170, 120), 8),
           "bottle": jit((40, 165, 70)), "label": np.array([235, 235, 235], np.float32), "cap": jit((30, 60, 160), 10)}
    pal = {k: v.astype(np.uint8) if k not in ("wall", "floor") else v for k, v in pal.items()}
    bw, bh, y0 = _BOX_W * rng.uniform(0.92, 1.08), _BOX_H * rng.uniform(0.92, 1.08), rng.uniform(-0.06, 0.06)
    actions, x_mid = plan_actions(scenario, rng, length, generation)
    poses = integrate(actions)[:-1]  # the pose at each frame, before its action
    if scenario.n_boxes == 1:
        objects = [(x_mid, y0, "box", bw, bh)]
    elif scenario.layout == "hori":
        objects = [(x_mid, y0 + d * (bw / 2 + 0.06), "box", bw, bh) for d in (-1, 1)]
    else:
        objects = [(x_mid + d * 0.45, y0, "box", bw, bh) for d in (-1, 1)]
    end = poses[-1]
    objects.append((end[0] + 0.6 + rng.uniform(0, 0.1), end[1] + rng.uniform(-0.04, 0.04), "bottle", 0.1, 0.3))
    wall_x = end[0] + rng.uniform(1.6, 2.2)
    return SyntheticEpisode(scenario, _render(poses, objects, wall_x, pal, frame_size), actions, poses)


def generate_episodes(out_dir: str | Path, n_episodes: int, *, seed: int = 0, frame_size: tuple[int, int] = FRAME_SIZE,
                      length: int = 18, generation: str = "v4", scenarios: Sequence[Scenario] | None = None,
                      with_instruction: bool | float = True) -> list[Path]:
    """Write `n_episodes` files cycling through `scenarios` (default: all 48, left/right alternating)."""
    if generation not in ("v4", "v5"):
        raise ValueError(f"generation must be 'v4' or 'v5', got {generation!r}")
    frac = float(with_instruction)
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"with_instruction must be a bool or a fraction in [0, 1], got {with_instruction!r}")
    scen = tuple(scenarios) if scenarios else V4_SCENARIOS
    has_instr = np.zeros(n_episodes, bool)  # V4 only; a seeded choice, uncorrelated with side
    has_instr[np.random.default_rng([seed, 7]).permutation(n_episodes)[: round(frac * n_episodes)]] = True
    out_dir = check_folder(out_dir, flag="DIR")
    start = datetime(2025, 1, 6, 9, 0, 0) + timedelta(days=seed % 3650)
    paths = []
    for i in range(n_episodes):
        sc, twin = scen[i % len(scen)], scen[(i ^ 1) % len(scen)]
        mirrored = twin == replace(sc, side="right" if sc.side == "left" else "left")
        ep = make_episode(sc, seed=[seed, i // 2, 0] if mirrored else [seed, i, 1], frame_size=frame_size,
                          length=length, generation=generation)
        stamp = start + timedelta(seconds=53 * i)
        path = claim(out_dir / f"episode_{stamp:%Y%m%d_%H%M%S}_{sc.tag}.h5", flag="DIR")
        text = instruction_for(sc.n_boxes, sc.side)
        if generation == "v4":
            attrs = {"obstacle_layout_type": f"{sc.n_boxes}box_{sc.layout}", "collection_datetime": stamp.isoformat()}
            write_episode_v4(path, ep.images, ep.actions, event_types_for(ep.actions),
                             instruction=text if has_instr[i] else None, attrs=attrs)
        else:
            attrs = {"scenario": f"{sc.n_boxes}box_{sc.layout}_{sc.side}", "pattern": sc.variant,
                     "distance": sc.distance, "end_pos": ep.poses[-1, :2].astype(np.float32)}
            write_episode_v5(path, ep.images, ep.actions, instruction=text, attrs=attrs)
        written(path)
        paths.append(path)
    return paths
