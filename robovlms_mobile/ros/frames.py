"""Camera messages -> RGB uint8 frames, from their fields (sensor_msgs/Image, sensor_msgs/CompressedImage).

Functions take the message object and read only its documented fields, so they are tested
without rclpy. Encodings: rgb8, bgr8 (what OpenCV-based drivers publish; the robot's V4 data
was BGR too), rgba8, bgra8, mono8.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 (H, W, 3); ValueError for an unsupported encoding or a short buffer."""
    encoding = str(msg.encoding).lower()
    if encoding not in CHANNELS:
        raise ValueError(f"image encoding {msg.encoding!r} is not supported; use one of {sorted(CHANNELS)}")
    h, w, c = int(msg.height), int(msg.width), CHANNELS[encoding]
    step = int(msg.step) or w * c
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if step < w * c or data.size < step * h:
        raise ValueError(f"image buffer of {data.size} bytes is too small for {w}x{h} {encoding} (step {step})")
    rows = data[: step * h].reshape(h, step)[:, : w * c]  # drop per-row padding
    pixels = rows.reshape(h, w, c)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding.startswith("bgr"):
        pixels = pixels[..., 2::-1]  # BGR(A) -> RGB
    return pixels[..., :3].copy()  # contiguous and writable (frombuffer views are read-only)


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG) -> RGB uint8 (H, W, 3)."""
    from PIL import Image

    with Image.open(io.BytesIO(bytes(msg.data)), formats=("JPEG", "PNG")) as img:
        return np.array(img.convert("RGB"))
