"""Episode files written the way the lab's original collectors write them (spec §7), camera replaced by arrays.

Transcribed after `save_episode_data` in the V4 collector
(`ROS_action/src/mobile_vla_package/mobile_vla_package/mobile_vla_data_collector.py`: latest,
intermediate and earliest versions) and `save_h5` in the V5 gradio collector
(`scripts/gradio_data_collector.py`: raw and JPEG storage), with the same h5py / OpenCV calls.
The camera gives BGR frames (cv_bridge `bgr8`), as on the robot.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import cv2
import h5py
import numpy as np

START = datetime(2025, 11, 14, 9, 0, 0)
KOREAN_8_CLASS = "<grounding>Navigate straight forward to the gray basket. 바구니를 향해 직진해."


def camera_frames(n: int, size: tuple[int, int] = (48, 64), seed: int = 0) -> list[np.ndarray]:
    """BGR frames as the camera node gives them: textured, distinct per step."""
    rng = np.random.default_rng(seed)
    return [rng.integers(30, 220, (*size, 3), dtype=np.uint8) for _ in range(n)]


def key_actions(n: int, speed: float = 1.15, turn: float = 0.0) -> list[dict]:
    """The collector's action dicts for n key presses: forward, forward-left, ... then stops."""
    keys = [(speed, 0.0, 0.0), (speed, speed, 0.0), (speed, 0.0, turn), (0.0, -speed, 0.0), (0.0, 0.0, 0.0)]
    return [dict(zip(("linear_x", "linear_y", "angular_z"), keys[i % len(keys)])) for i in range(n)]


def _v4_episode_data(n: int, seed: int, first_event: str = "episode_start") -> list[dict]:
    events = [first_event] + ["start_action" if any(a.values()) else "stop_action" for a in key_actions(n)[1:]]
    actions = [{"linear_x": 0.0, "linear_y": 0.0, "angular_z": 0.0}] + key_actions(n)[1:]
    return [{"image": img, "action": a, "action_event_type": e} for img, a, e in zip(camera_frames(n, seed=seed), actions, events)]


def save_episode_data(data_dir: Path, episode_data: list[dict], episode_name: str, total_duration: float,
                      version: str = "latest") -> Path:
    """The V4 collector's writer; `version` intermediate / earliest writes only its four attrs."""
    save_path = Path(data_dir) / f"{episode_name}.h5"
    images, actions, action_event_types = [], [], []
    for d in episode_data:
        images.append(d["image"])
        actions.append([d["action"]["linear_x"], d["action"]["linear_y"], d["action"]["angular_z"]])
        action_event_types.append(d["action_event_type"])
    images = np.stack(images)
    actions = np.array(actions, dtype=np.float32)
    action_event_types = np.array(action_event_types, dtype=h5py.string_dtype(encoding="utf-8"))
    stamp = START
    with h5py.File(save_path, "w") as f:
        f.attrs["episode_name"] = episode_name
        f.attrs["total_duration"] = total_duration
        f.attrs["num_frames"] = images.shape[0]
        f.attrs["action_chunk_size"] = 8
        if version == "latest":
            f.attrs["obstacle_layout_type"] = "hori"
            f.attrs["time_period"] = "morning"
            f.attrs["collection_datetime"] = stamp.isoformat()
            f.attrs["collection_hour"] = stamp.hour
            f.attrs["collection_minute"] = stamp.minute
        f.create_dataset("images", data=images, compression="gzip")
        f.create_dataset("actions", data=actions, compression="gzip")
        f.create_dataset("action_event_types", data=action_event_types, compression="gzip")
    return save_path


def v4_latest(d: Path, n: int = 18, tag: str = "1box_hori_left_core_medium", seed: int = 0) -> Path:
    name = f"episode_{START + timedelta(seconds=seed):%Y%m%d_%H%M%S}_{tag}"
    return save_episode_data(d, _v4_episode_data(n, seed), name, 0.4 * n)


def v4_intermediate(d: Path, n: int = 18, tag: str = "2box_vert_right", seed: int = 1) -> Path:
    name = f"episode_{START + timedelta(seconds=seed):%Y%m%d_%H%M%S}_{tag}"
    return save_episode_data(d, _v4_episode_data(n, seed), name, 0.4 * n, version="intermediate")


def v4_earliest(d: Path, n: int = 6, seed: int = 2) -> Path:
    """`episode_<ts>.h5`: every frame collected at a stop (speed 0.5 keys never recorded), no episode_start."""
    stop = {"linear_x": 0.0, "linear_y": 0.0, "angular_z": 0.0}
    data = [{"image": img, "action": dict(stop), "action_event_type": "stop_action"} for img in camera_frames(n, seed=seed)]
    return save_episode_data(d, data, f"episode_{START + timedelta(seconds=seed):%Y%m%d_%H%M%S}", 0.3 * n, version="earliest")


def save_h5(data_dir: Path, episode_buffer: list[dict], *, sid: str, pattern: str, distance: str, pos_tag: str, prompt: str,
            image_storage: str = "jpeg", jpeg_quality: int = 90, div: str = "", stamp: datetime = START) -> Path:
    """The V5 gradio collector's writer (raw or JPEG storage; JPEG is its default)."""
    fname = f"episode_{stamp:%y%m%d_%H%M%S}_{sid}{div}__{pattern}__{distance}_{pos_tag}.h5"
    imgs = [cv2.cvtColor(d["image"], cv2.COLOR_BGR2RGB) for d in episode_buffer]
    acts = [d["action"] for d in episode_buffer]
    timestamps = [d["timestamp"] for d in episode_buffer]
    with h5py.File(Path(data_dir) / fname, "w") as f:
        if image_storage == "jpeg":
            vlen = h5py.vlen_dtype(np.uint8)
            ds = f.create_dataset("observations/images", (len(imgs),), dtype=vlen)
            for i, rgb in enumerate(imgs):
                buf = cv2.imencode(".jpg", rgb, [int(cv2.IMWRITE_JPEG_QUALITY), jpeg_quality])[1]
                ds[i] = np.frombuffer(buf.tobytes(), dtype=np.uint8)
            ds.attrs["format"] = "jpeg"
            ds.attrs["quality"] = jpeg_quality
        else:
            f.create_dataset("observations/images", data=np.array(imgs), compression="gzip")
        f.create_dataset("actions", data=np.array(acts))
        if image_storage == "jpeg":
            f.create_dataset("timestamps", data=np.array(timestamps))
        f.create_dataset("language_instruction", data=[prompt.encode("utf-8")])
        f.attrs.update({"scenario": sid, "pattern": pattern, "distance": distance, "end_pos": pos_tag})
    return Path(data_dir) / fname


def v5_buffer(n_keys: int = 8, frames: list[np.ndarray] | None = None, seed: int = 3) -> list[dict]:
    """n key presses (angular_z +-0.2 among them) then the 5 injected STOP frames: n + 5 frames."""
    frames = frames or camera_frames(n_keys, seed=seed)
    acts = [[a["linear_x"], a["linear_y"], a["angular_z"]] for a in key_actions(n_keys, turn=0.2)]
    buf = [{"image": img, "action": act, "timestamp": 1.7e9 + 0.45 * i} for i, (img, act) in enumerate(zip(frames, acts))]
    buf += [{"image": buf[-1]["image"].copy(), "action": [0.0, 0.0, 0.0], "timestamp": 1.7e9 + 0.45 * (n_keys + i)}
            for i in range(5)]
    return buf


def v5(d: Path, storage: str = "jpeg", n_keys: int = 8, sid: str = "target_left_straight_path", pos: str = "left",
       seed: int = 3, prompt: str = "Keep approaching until the gray basket aligns with the left side of the frame.",
       frames: list[np.ndarray] | None = None) -> Path:
    return save_h5(d, v5_buffer(n_keys, frames, seed), sid=sid, pattern="core", distance="fixed", pos_tag=pos, prompt=prompt,
                   image_storage=storage, stamp=START + timedelta(seconds=seed))


def add_free_copy(src: Path, out_dir: Path) -> Path:
    """As build_dataset_v5_add_free: same name, no attributes, images uncompressed, mid-episode STOP frames removed."""
    with h5py.File(src, "r") as f:
        images = f["observations/images"][()]
        if images.dtype == object:
            images = np.stack([cv2.imdecode(b, cv2.IMREAD_COLOR) for b in images])
        actions = f["actions"][()]
        prompt = f["language_instruction"][0]
    moving = np.any(actions != 0, axis=1)
    last = int(np.flatnonzero(moving)[-1]) if moving.any() else 0
    keep = [t for t in range(len(actions)) if moving[t] or t > last]  # STOP frames only at the end
    out = Path(out_dir) / Path(src).name
    with h5py.File(out, "w") as f:
        f.create_dataset("observations/images", data=images[keep])
        f.create_dataset("actions", data=actions[keep])
        f.create_dataset("language_instruction", data=[prompt])
    return out


def rewrite_instruction(path: Path, text: str = KOREAN_8_CLASS) -> Path:
    """The 8-class instruction rewrite script: replace `language_instruction` in place."""
    with h5py.File(path, "r+") as f:
        del f["language_instruction"]
        f.create_dataset("language_instruction", data=[text.encode("utf-8")])
    return path
