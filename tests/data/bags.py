"""Write real ROS 2 bags (MCAP storage, CDR messages) with the `mcap` / `mcap-ros2-support` libraries: no ROS needed."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mcap_ros2.writer import Writer
from PIL import Image

_HEADER = """================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""
IMAGE_DEF = """std_msgs/Header header
uint32 height
uint32 width
string encoding
uint8 is_bigendian
uint32 step
uint8[] data
""" + _HEADER
COMPRESSED_DEF = """std_msgs/Header header
string format
uint8[] data
""" + _HEADER
TWIST_DEF = """Vector3  linear
Vector3  angular
================================================================================
MSG: geometry_msgs/Vector3
float64 x
float64 y
float64 z
"""
STRING_DEF = "string data\n"
MS = 1_000_000  # ns


def _header(t_ns: int) -> dict:
    return {"stamp": {"sec": t_ns // 10**9, "nanosec": t_ns % 10**9}, "frame_id": "camera"}


def image_message(rgb: np.ndarray, kind: str, t_ns: int) -> dict:
    """A sensor_msgs Image (kind rgb8 / bgr8 / rgba8 / mono8) or CompressedImage (png / jpeg) message dict."""
    h, w = rgb.shape[:2]
    if kind in ("png", "jpeg"):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=kind.upper(), **({"quality": 95} if kind == "jpeg" else {}))
        return {"header": _header(t_ns), "format": kind, "data": buf.getvalue()}
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], -1),
              "mono8": rgb[..., :1]}[kind]
    pixels = np.ascontiguousarray(pixels)
    channels = pixels.shape[-1]
    padded = np.zeros((h, w * channels + 4), np.uint8)  # row padding: `step` > width * channels
    padded[:, : w * channels] = pixels.reshape(h, -1)
    return {"header": _header(t_ns), "height": h, "width": w, "encoding": kind, "is_bigendian": 0,
            "step": w * channels + 4, "data": padded.tobytes()}


def twist_message(v: Sequence[float]) -> dict:
    """A geometry_msgs Twist dict from [linear_x, linear_y, angular_z]."""
    return {"linear": {"x": float(v[0]), "y": float(v[1]), "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": float(v[2])}}


def write_mcap(path: Path, images: Sequence[tuple[int, np.ndarray]], commands: Sequence[tuple[int, Sequence[float]]], *,
               kind: str = "rgb8", camera_topic: str = "/camera/image_raw", cmd_topic: str = "/cmd_vel",
               extra_topic: bool = True) -> Path:
    """One .mcap file: camera frames [(t_ns, RGB)], commands [(t_ns, [vx, vy, wz])], plus an unrelated /rosout-like topic."""
    with open(path, "wb") as fh:
        writer = Writer(fh)
        compressed = kind in ("png", "jpeg")
        cam = writer.register_msgdef("sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image",
                                     COMPRESSED_DEF if compressed else IMAGE_DEF)
        cmd = writer.register_msgdef("geometry_msgs/msg/Twist", TWIST_DEF)
        text = writer.register_msgdef("std_msgs/msg/String", STRING_DEF)
        records = [(t, 0, camera_topic, cam, image_message(rgb, kind, t)) for t, rgb in images]
        records += [(t, 1, cmd_topic, cmd, twist_message(v)) for t, v in commands]
        if extra_topic:
            records += [(t, 2, "/chatter", text, {"data": "hello"}) for t, _ in images[::3]]
        for t, _, topic, schema, msg in sorted(records, key=lambda r: (r[0], r[1])):
            writer.write_message(topic, schema, msg, log_time=t, publish_time=t)
        writer.finish()
    return path


def write_rosbag2(folder: Path, images, commands, *, parts: int = 2, storage: str = "mcap", **kwargs) -> Path:
    """A rosbag2 folder: metadata.yaml plus the messages split over `parts` .mcap files by time."""
    folder.mkdir(parents=True, exist_ok=True)
    times = sorted({t for t, _ in images} | {t for t, _ in commands})
    cuts = [times[round(i * len(times) / parts)] for i in range(1, parts)] + [times[-1] + 1]
    names, lo = [], -1
    for i, hi in enumerate(cuts):
        name = f"{folder.name}_{i}.mcap"
        write_mcap(folder / name, [x for x in images if lo <= x[0] < hi], [x for x in commands if lo <= x[0] < hi], **kwargs)
        names.append(name)
        lo = hi
    files = "\n".join(f"    - {n}" for n in names)
    (folder / "metadata.yaml").write_text(
        f"rosbag2_bagfile_information:\n  version: 5\n  storage_identifier: {storage}\n  relative_file_paths:\n{files}\n")
    return folder
