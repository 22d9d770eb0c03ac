"""The simulated room: axis-aligned boxes, distractors, a bottle, a holonomic base; dynamics, collisions, success.

Coordinates: x forward (the camera always looks along +x: the base never turns), y left, metres.
One step applies a velocity command `[linear_x, linear_y]` (m/s, clipped to +-max_speed per axis)
for `STEP_S` seconds, as one key press does on the robot. Success is judged by `Outcome`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robovlms_mobile.task import MAX_SPEED as SPEED  # keyboard linear velocity, m/s
from robovlms_mobile.task import STEP_S  # seconds of motion per frame
LATTICE = SPEED * STEP_S  # 0.46 m: one key press
ROBOT_RADIUS = 0.2
STANDOFF = 0.7  # goal: this far in front of the bottle (its base still in view)
SUCCESS_RADIUS = 0.3
STOP_SPEED = 0.25 * SPEED  # a command below this on both axes is a stop (key released)
SUBSTEPS = 8  # collision checks per step


@dataclass(frozen=True)
class Box:
    """An axis-aligned object on the floor: x0 < x1 (depth), y0 < y1 (width), height h, RGB colour."""

    x0: float
    x1: float
    y0: float
    y1: float
    h: float
    colour: tuple[float, float, float] = (150.0, 100.0, 52.0)
    kind: str = "box"  # "box" (an obstacle to pass) or "distractor" (clutter to avoid)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2


@dataclass(frozen=True)
class World:
    """Static geometry of one episode plus where the robot must stop and on which side it must pass."""

    boxes: tuple[Box, ...]
    target: tuple[float, float]  # bottle position
    goal: tuple[float, float]  # stop point in front of the bottle
    side: str  # instructed side: "left" (+y) or "right" (-y)
    instruction: str
    room: tuple[float, float, float, float]  # x_min, x_max (front wall), y_min, y_max
    palette: dict = field(default_factory=dict, compare=False)
    start: tuple[float, float] = (0.0, 0.0)  # robot position at the first frame
    target_radius: float = 0.05
    distractors: tuple[Box, ...] = ()  # clutter: obstacles too, but not the ones the instruction names
    worlds: str = "iid"  # the world distribution it was drawn from (sim/scenarios.py DISTRIBUTIONS)

    def collides(self, x: float, y: float) -> bool:
        """Whether a robot disc at (x, y) overlaps a box, a distractor, the bottle or a wall."""
        return bool(self.blocked(np.array([x]), np.array([y]))[0])

    def blocked(self, xs: np.ndarray, ys: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Vectorised `collides` for robot discs (radius + margin) at many points (same shape as xs)."""
        x_min, x_max, y_min, y_max = self.room
        r = ROBOT_RADIUS + margin
        out = (xs - r < x_min) | (xs + r > x_max) | (ys - r < y_min) | (ys + r > y_max)
        for b in self.boxes + self.distractors:
            dx = np.maximum(np.maximum(b.x0 - xs, 0.0), xs - b.x1)
            dy = np.maximum(np.maximum(b.y0 - ys, 0.0), ys - b.y1)
            out |= dx * dx + dy * dy < r * r
        tx, ty = self.target
        return out | ((xs - tx) ** 2 + (ys - ty) ** 2 < (r + self.target_radius) ** 2)

    def objects(self) -> list[dict]:
        """Every object in the room as plain values: kind, centre [x, y] (m), size [depth, width, height] (m), RGB colour."""
        out = [{"kind": b.kind, "position": [round((b.x0 + b.x1) / 2, 4), round((b.y0 + b.y1) / 2, 4)],
                "size": [round(b.x1 - b.x0, 4), round(b.y1 - b.y0, 4), round(b.h, 4)], "colour": [round(float(c), 1) for c in b.colour]}
               for b in self.boxes + self.distractors]
        bottle = self.palette.get("bottle", (40.0, 165.0, 70.0))
        out.append({"kind": "bottle", "position": [round(self.target[0], 4), round(self.target[1], 4)],
                    "size": [2 * self.target_radius, 2 * self.target_radius, 0.30], "colour": [round(float(c), 1) for c in bottle]})
        return out

    def pass_side(self, y: float) -> str:
        """Which side of the obstacles a robot at lateral position y is on."""
        yc = float(np.mean([b.center[1] for b in self.boxes]))
        return "left" if y > yc else "right"

    @property
    def obstacle_x(self) -> tuple[float, float]:
        """Front and back x of the obstacle group."""
        return min(b.x0 for b in self.boxes), max(b.x1 for b in self.boxes)


@dataclass
class RobotState:
    """Where the robot is and what happened so far in an episode."""

    x: float
    y: float
    path_length: float = 0.0
    collided: bool = False
    moved: bool = False
    passed_side: str | None = None  # side of the obstacle when the robot's x crossed its middle
    trail: list = field(default_factory=list)

    @property
    def pos(self) -> np.ndarray:
        return np.array([self.x, self.y])


def is_stop(action: np.ndarray) -> bool:
    """A command that is a stop (both axes below STOP_SPEED)."""
    return bool(np.all(np.abs(np.asarray(action, np.float64)[:2]) < STOP_SPEED))


def step(world: World, state: RobotState, action: np.ndarray, max_speed: float = SPEED) -> RobotState:
    """Apply one velocity command for STEP_S seconds; stops at the first contact (collision)."""
    v = np.clip(np.asarray(action, np.float64)[:2], -max_speed, max_speed)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"non-finite action {action!r}")
    if not state.trail:
        state.trail.append((state.x, state.y))
    if not is_stop(v):
        state.moved = True
    x_mid = float(np.mean(world.obstacle_x))
    dx, dy = v * STEP_S / SUBSTEPS
    for _ in range(SUBSTEPS):
        nx, ny = state.x + dx, state.y + dy
        if world.collides(nx, ny):
            state.collided = True
            break
        if state.passed_side is None and state.x < x_mid <= nx:
            state.passed_side = world.pass_side(ny)
        state.path_length += float(np.hypot(dx, dy))
        state.x, state.y = nx, ny
    state.trail.append((state.x, state.y))
    return state


@dataclass(frozen=True)
class Outcome:
    """How an episode ended: success needs a stop within SUCCESS_RADIUS of the goal on the instructed side."""

    success: bool
    reason: str  # success | collision | wrong_side | missed_goal | timeout
    final_error: float  # metres from the goal
    path_length: float
    steps: int


def judge(world: World, state: RobotState, stopped: bool, steps: int) -> Outcome:
    """Classify a finished episode."""
    err = float(np.hypot(state.x - world.goal[0], state.y - world.goal[1]))
    if state.collided:
        reason = "collision"
    elif not stopped:
        reason = "timeout"
    elif state.passed_side is not None and state.passed_side != world.side:
        reason = "wrong_side"
    elif err > SUCCESS_RADIUS or state.passed_side is None:
        reason = "missed_goal"
    else:
        reason = "success"
    return Outcome(reason == "success", reason, err, state.path_length, steps)
