"""Camera messages -> RGB uint8 frames, from their fields: the one converter for ROS image messages.

Used by the live bridge and meant for every other reader of sensor_msgs/Image and
sensor_msgs/CompressedImage (bag conversion: `message_to_rgb(msg, compressed)`). Functions read
only the messages' documented fields, so they work on rclpy messages, mcap-decoded messages and
plain objects alike, without rclpy. Encodings: rgb8, bgr8 (what OpenCV-based drivers publish; the
robot's V4 data was BGR too), rgba8, bgra8, mono8; compressed: JPEG and PNG. Every refusal is a
ValueError with one line saying what was expected.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
MAX_PIXELS = 50_000_000  # larger frames are refused before any decode (a camera frame is ~1-10 Mpx)


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 (H, W, 3); ValueError for an unsupported encoding or a short buffer."""
    encoding = str(msg.encoding).lower()
    if encoding not in CHANNELS:
        raise ValueError(f"image encoding {msg.encoding!r} is not supported; use one of {sorted(CHANNELS)}")
    h, w, c = int(msg.height), int(msg.width), CHANNELS[encoding]
    if h <= 0 or w <= 0 or h * w > MAX_PIXELS:
        raise ValueError(f"image size {w}x{h}: expected 1..{MAX_PIXELS} pixels")
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
    """sensor_msgs/CompressedImage (JPEG/PNG) -> RGB uint8 (H, W, 3); ValueError if it does not decode."""
    from PIL import Image

    data = bytes(msg.data)
    if not data:
        raise ValueError("empty CompressedImage: expected JPEG or PNG bytes")
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ValueError(f"CompressedImage of {img.width}x{img.height}: expected at most {MAX_PIXELS} pixels")
            return np.array(img.convert("RGB"))
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad data
        raise ValueError(f"CompressedImage (format {getattr(msg, 'format', '?')!r}) does not decode as JPEG/PNG "
                         f"({type(exc).__name__})") from None


def message_to_rgb(msg: Any, compressed: bool) -> np.ndarray:
    """Either message type -> RGB uint8 (H, W, 3)."""
    return compressed_msg_to_rgb(msg) if compressed else image_msg_to_rgb(msg)
