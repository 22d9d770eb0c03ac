"""The one policy protocol: what evaluators, the ROS bridge and the server's clients drive.

A `Policy` runs one episode at a time: `reset()` starts it over, `act(frame, instruction)` runs
one control tick and returns the velocity (2,) [linear_x, linear_y] in m/s. A frame is an RGB
uint8 array (H, W, 3) or already encoded JPEG/PNG bytes (e.g. a ROS CompressedImage). In-process
implementation: `runtime.in_process.InProcessPolicy` (the one adapter of `MobileVLAPolicy`); over the wire:
`runtime.client.RemotePolicy`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

Frame = np.ndarray | bytes


@runtime_checkable
class Policy(Protocol):
    """A driving policy: one camera frame and the instruction in, one velocity command out."""

    def reset(self) -> None:
        """Start a new episode (forget frame history)."""

    def act(self, frame: Frame, instruction: str) -> np.ndarray:
        """RGB uint8 (H, W, 3) frame or JPEG/PNG bytes + instruction -> (2,) [linear_x, linear_y] in m/s."""
