"""Writing episode files in the robot's V4 / V5 layouts (spec §4, §7); used by convert, the simulator and the generator."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from robovlms_mobile.data.format import EVENT_TYPES, V4_ATTRS, V5_ATTRS, V5_IMAGES
from robovlms_mobile.task import STEP_S, check_instruction

CHUNK_SIZE = 8  # V4 `action_chunk_size` attr the collector writes
V4_WRITTEN_ATTRS = (*V4_ATTRS, "obstacle_layout_type", "collection_datetime")  # the latest V4 collector's
STORAGES = ("raw", "jpeg")


def event_types_for(actions: np.ndarray) -> list[str]:
    """V4 event per frame: episode_start, then start_action (moving) / stop_action (zero action)."""
    return ["episode_start"] + ["start_action" if np.any(a != 0) else "stop_action" for a in actions[1:]]


def _check(images: np.ndarray, actions: np.ndarray, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    images, actions = np.asarray(images), np.asarray(actions, dtype)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (T, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if actions.shape != (len(images), 3):
        raise ValueError(f"actions must be ({len(images)}, 3), got {actions.shape}")
    return images, actions


def _images_dataset(h5: h5py.File | h5py.Group, key: str, images: np.ndarray) -> None:
    h5.create_dataset(key, data=images, chunks=(1, *images.shape[1:]), compression="gzip", compression_opts=4)


def _instruction_array(instruction: str, itemsize: int = 0) -> np.ndarray:
    """(1,) fixed-length UTF-8 bytes, as the collectors write (V4: S256 when it fits; V5: as long as the text)."""
    raw = check_instruction(instruction).encode("utf-8")
    return np.array([raw], dtype=f"S{max(itemsize, len(raw), 1)}")


def encode_jpeg_as_collector(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    """JPEG bytes (uint8) of an RGB frame encoded as the V5 collector does: the array taken for BGR (channels swapped)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., ::-1])).save(buf, "JPEG", quality=int(quality))
    return np.frombuffer(buf.getvalue(), np.uint8)


def write_episode_v4(path: str | Path, images_rgb: np.ndarray, actions: np.ndarray, event_types: Sequence[str], *,
                     instruction: str | None, attrs: dict) -> Path:
    """Write a V4 file (BGR `images`, `actions`, `action_event_types`, optional `language_instruction`)."""
    path = Path(path)
    images, actions = _check(images_rgb, actions)
    events = list(event_types)
    if len(events) != len(images) or events[:1] != ["episode_start"] or not set(events) <= set(EVENT_TYPES):
        raise ValueError(f"event_types must be {len(images)} of {EVENT_TYPES} starting with 'episode_start'")
    meta = {"episode_name": path.stem, "num_frames": len(images), "total_duration": len(images) * STEP_S,
            "action_chunk_size": CHUNK_SIZE, **attrs}
    missing = [k for k in V4_WRITTEN_ATTRS if k not in meta]
    if missing:
        raise ValueError(f"V4 attrs missing: {missing}")
    with h5py.File(path, "w") as h5:
        _images_dataset(h5, "images", np.ascontiguousarray(images[..., ::-1]))  # OpenCV order on disk
        h5.create_dataset("actions", data=actions, compression="gzip")
        h5.create_dataset("action_event_types", data=events, dtype=h5py.string_dtype("utf-8"), compression="gzip")
        if instruction is not None:
            h5.create_dataset("language_instruction", data=_instruction_array(instruction, 256))
        h5.attrs.update(meta)
    return path


def write_episode_v5(path: str | Path, images_rgb: np.ndarray, actions: np.ndarray, *, instruction: str, attrs: dict,
                     storage: str = "raw", quality: int = 90, timestamps: np.ndarray | None = None,
                     action_dtype: type = np.float32) -> Path:
    """Write a V5 file: `observations/images` (raw RGB gzip, or the collector's JPEG bytes), `actions`,
    `language_instruction`, optional `timestamps`, scenario attrs."""
    path = Path(path)
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    images, actions = _check(images_rgb, actions, action_dtype)
    missing = [k for k in V5_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"V5 attrs missing: {missing}")
    with h5py.File(path, "w") as h5:
        if storage == "raw":
            _images_dataset(h5.create_group("observations"), "images", images)
        else:
            ds = h5.create_dataset(V5_IMAGES, (len(images),), dtype=h5py.vlen_dtype(np.uint8))
            for t, frame in enumerate(images):
                ds[t] = encode_jpeg_as_collector(frame, quality)
            ds.attrs.update({"format": "jpeg", "quality": int(quality)})
        h5.create_dataset("actions", data=actions)
        if timestamps is not None:
            h5.create_dataset("timestamps", data=np.asarray(timestamps, np.float64))
        h5.create_dataset("language_instruction", data=_instruction_array(instruction))
        h5.attrs.update(attrs)
    return path
