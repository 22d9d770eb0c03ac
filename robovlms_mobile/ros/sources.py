"""Where the bridge gets actions: the HTTP policy server, or a MobileVLAPolicy in the same process.

Both keep one episode: `reset()` starts it over, `act(frame, instruction)` runs one control
tick and returns the velocity (2,) in m/s. A frame is an RGB uint8 array or encoded JPEG/PNG
bytes (a CompressedImage goes to the server as it came).
"""

from __future__ import annotations

import io
from typing import Any, Protocol

import numpy as np


class ActionSource(Protocol):
    """One episode of a policy, one tick per call."""

    def act(self, frame: np.ndarray | bytes, instruction: str) -> np.ndarray:
        """The velocity (2,) [linear_x, linear_y] in m/s for this tick."""

    def reset(self) -> None:
        """Start a new episode."""


def to_rgb(frame: np.ndarray | bytes) -> np.ndarray:
    """RGB array as is; JPEG/PNG bytes decoded."""
    if isinstance(frame, (bytes, bytearray)):
        from PIL import Image

        with Image.open(io.BytesIO(bytes(frame)), formats=("JPEG", "PNG")) as img:
            return np.array(img.convert("RGB"))
    return frame


class InProcessSource:
    """A MobileVLAPolicy loaded in this process (no network between the camera and the model)."""

    def __init__(self, policy: Any):
        self.policy = policy
        self.episode = policy.new_episode()
        self.last: Any = None

    def act(self, frame: np.ndarray | bytes, instruction: str) -> np.ndarray:
        self.last = self.policy.step(to_rgb(frame), instruction, self.episode)
        return self.last.velocity

    def reset(self) -> None:
        self.policy.reset(self.episode)


class HttpSource:
    """The policy server; the episode is started on first use and restarted if the server forgot it."""

    def __init__(self, client: Any):
        self.client = client
        self.episode_id: str | None = None
        self.restarts = 0  # times the server had evicted or lost our episode
        self.last: dict[str, Any] | None = None

    def act(self, frame: np.ndarray | bytes, instruction: str) -> np.ndarray:
        from robovlms_mobile.serve.client import PolicyServerError

        if self.episode_id is None:
            self.reset()
        try:
            self.last = self.client.act(frame, instruction, episode_id=self.episode_id)
        except PolicyServerError as exc:
            if exc.code != "unknown_episode":
                raise
            # evicted or server restarted: the window starts over, which the safety layer tolerates
            self.restarts += 1
            self.last = self.client.act(frame, instruction, episode_id=self.episode_id, start=True)
        return np.asarray(self.last["velocity"], dtype=np.float64)

    def reset(self) -> None:
        self.episode_id = self.client.reset(self.episode_id)
