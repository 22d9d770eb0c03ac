"""Where the bridge gets actions: a `Policy` (runtime.protocol) in this process or over HTTP.

`InProcessSource` runs a MobileVLAPolicy here (no network between the camera and the model);
`HttpSource` is the runtime's `RemotePolicy` (a policy server, native or original API). A frame
is an RGB uint8 array or encoded JPEG/PNG bytes (a CompressedImage goes to a server as it came).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from robovlms_mobile.runtime.client import RemotePolicy
from robovlms_mobile.runtime.protocol import Frame, Policy

ActionSource = Policy  # the bridge drives the one policy protocol
HttpSource = RemotePolicy


def to_rgb(frame: Frame) -> np.ndarray:
    """RGB array as is; JPEG/PNG bytes decoded."""
    if isinstance(frame, (bytes, bytearray)):
        from PIL import Image

        with Image.open(io.BytesIO(bytes(frame)), formats=("JPEG", "PNG")) as img:
            return np.array(img.convert("RGB"))
    return frame


class InProcessSource:
    """A MobileVLAPolicy loaded in this process, one episode at a time."""

    def __init__(self, policy: Any):
        self.policy = policy
        self.episode = policy.new_episode()
        self.last: Any = None

    def act(self, frame: Frame, instruction: str) -> np.ndarray:
        self.last = self.policy.step(to_rgb(frame), instruction, self.episode)
        return self.last.velocity

    def reset(self) -> None:
        self.policy.reset(self.episode)
