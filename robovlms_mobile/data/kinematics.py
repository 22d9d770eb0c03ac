"""Planar kinematics of the robot: body-frame velocity commands, each held for one step, to poses."""

from __future__ import annotations

import numpy as np

from robovlms_mobile.task import STEP_S


def integrate(actions: np.ndarray, dt: float = STEP_S) -> np.ndarray:
    """Poses (T + 1, 3) [x, y, heading] from body-frame velocities (T, 2|3) [vx, vy(, wz)], each held for dt seconds."""
    actions = np.asarray(actions, np.float64)
    if actions.shape[1] == 2:
        actions = np.pad(actions, ((0, 0), (0, 1)))  # no rotation
    poses = np.zeros((len(actions) + 1, 3))
    for t, (vx, vy, wz) in enumerate(actions[:, :3]):
        x, y, th = poses[t]
        c, s = np.cos(th), np.sin(th)
        poses[t + 1] = (x + dt * (c * vx - s * vy), y + dt * (s * vx + c * vy), th + dt * wz)
    return poses
