"""Episode files for tests: small well-formed V4/V5 writers and a generator of malformed files, one per defect."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from robovlms_mobile.data.writers import event_types_for, write_episode_v4, write_episode_v5

SIZE = (16, 16)  # stored frame (H, W); the dataset resizes to 224
V5_TEXT = "go around the boxes on the right and stop in front of the bottle"
TAG = "_1box_hori_left_core_medium.h5"  # a name that yields an instruction, so only the defect is wrong


def v4_name(i: int = 0, side: str = "left", boxes: int = 1) -> str:
    return f"episode_20250106_0900{i:02d}_{boxes}box_hori_{side}_core_medium.h5"


def ramp_actions(length: int) -> np.ndarray:
    """(length, 3) float32 actions, distinct at every step, |linear| <= 1.15, angular_z 0.2."""
    t = np.arange(length, dtype=np.float32)
    return np.stack([1.15 * (t + 1) / length, -1.15 * t / length, np.full(length, 0.2, np.float32)], 1)


def frames(length: int, colour: tuple | None = None, variant: int = 0) -> np.ndarray:
    """Solid RGB frames; by default frame t has colour (10t, 200 - 10t, 5t + variant) so a window's start can be read back.

    `variant` (0..160) changes the content, not the red channel: files that must not be duplicates differ in it.
    """
    t = np.arange(length)
    colours = np.tile(np.uint8(colour), (length, 1)) if colour else np.stack([10 * t, 200 - 10 * t, 5 * t + variant], 1)
    return np.ascontiguousarray(np.broadcast_to(colours.astype(np.uint8)[:, None, None], (length, *SIZE, 3)))


def textured_frames(length: int, seed: int = 0) -> np.ndarray:
    """Seeded noise frames (length, 16, 16, 3): neither black nor constant."""
    return np.random.default_rng(seed).integers(20, 236, (length, *SIZE, 3), dtype=np.uint8)


def write_v4(path, actions, images=None, instruction=None):
    images = frames(len(actions)) if images is None else images
    attrs = {"obstacle_layout_type": "1box_hori", "collection_datetime": "2025-01-06T09:00:00"}
    return write_episode_v4(path, images, actions, event_types_for(actions), instruction=instruction, attrs=attrs)


def write_v5(path, actions, images=None, instruction=V5_TEXT):
    images = frames(len(actions)) if images is None else images
    attrs = {"scenario": "2box_hori_right", "pattern": "core", "distance": "medium", "end_pos": np.zeros(2, np.float32)}
    return write_episode_v5(path, images, actions, instruction=instruction, attrs=attrs)


def write_raw(path, datasets: dict, attrs: dict | None = None):
    """An HDF5 file holding exactly these datasets (keys may be 'group/name'), for malformed inputs."""
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
        f.attrs.update(attrs or {})
    return path


@dataclass(frozen=True)
class Defect:
    """What `validate` / the dataset must say about one generated file."""

    code: str  # Problem.code
    text: str  # a substring of its message
    severity: str = "error"


def write_bad_files(d, *, warnings: bool = False) -> dict[str, Defect]:
    """Write one malformed file per defect into d (18-frame episodes, window + chunk = 18; too short: 1 frame); returns {name: Defect}.

    Besides the bad files it writes one valid `episode_20250107_...` file (a copy of it would be a duplicate: a
    warning since issue 21, tested in tests/hostile/test_outputs.py, so not one of these).
    With `warnings`, also files that are usable but suspicious (black / constant frames).
    """
    d = Path(d)
    imgs, acts = frames(18), ramp_actions(18)
    nan, inf, fast = acts.copy(), acts.copy(), acts.copy()
    nan[3, 0], inf[4, 1], fast[5, 1] = np.nan, np.inf, -1.3
    raw_cases = {  # a file whose generation is known says which (spec §4)
        f"missing_actions{TAG}": ({"images": imgs}, Defect("no_actions", "V4 file has no 'actions'")),
        f"v5_missing_actions{TAG}": ({"observations/images": imgs}, Defect("no_actions", "V5 file has no 'actions'")),
        f"v5_too_short{TAG}": ({"observations/images": imgs[:1], "actions": acts[:1]}, Defect("too_short", "V5 file has 1 frames")),
        f"missing_images{TAG}": ({"actions": acts}, Defect("no_images", "no image data")),
        f"grey_images{TAG}": ({"images": imgs[..., 0], "actions": acts}, Defect("image_shape", "V4 '/images' has shape (18, 16, 16)")),
        f"float_images{TAG}": ({"images": imgs.astype(np.float32), "actions": acts},
                               Defect("image_dtype", "V4 '/images' has dtype float32")),
        f"int_actions{TAG}": ({"images": imgs, "actions": acts.astype(np.int64)}, Defect("action_dtype", "V4 'actions' has dtype int64")),
        f"flat_actions{TAG}": ({"images": imgs, "actions": acts[:, 0]}, Defect("action_shape", "V4 'actions' has shape (18,)")),
        f"count_mismatch{TAG}": ({"images": imgs, "actions": acts[:-1]}, Defect("count_mismatch", "V4 file has 18 frames but 17 actions")),
        f"nan_actions{TAG}": ({"images": imgs, "actions": nan}, Defect("non_finite", "V4 'actions' contains NaN")),
        f"inf_actions{TAG}": ({"images": imgs, "actions": inf}, Defect("non_finite", "inf")),
        f"too_short{TAG}": ({"images": imgs[:1], "actions": acts[:1]}, Defect("too_short", "need at least 2 frames")),
        f"over_speed{TAG}": ({"images": imgs, "actions": fast}, Defect("over_speed", "|action| reaches 1.300 > max_speed 1.15")),
        "episode_20250106_090000_no_scenario.h5": ({"images": imgs, "actions": acts},
                                                   Defect("no_instruction", "V4 file has no 'language_instruction'")),
    }
    expected = {name: defect for name, (_, defect) in raw_cases.items()}
    for name, (datasets, _) in raw_cases.items():
        write_raw(d / name, datasets)
    with h5py.File(write_v4(d / f"unknown_events{TAG}", acts, images=frames(18, variant=1)), "r+") as f:
        del f["action_event_types"]  # the writer only writes known types
        f.create_dataset("action_event_types", data=["episode_start"] + ["key_press"] * 17, dtype=h5py.string_dtype())
    (d / f"not_hdf5{TAG}").write_text("this is not an HDF5 file\n")
    valid = write_v4(d / "valid.tmp", acts).read_bytes()
    (d / f"truncated{TAG}").write_bytes(valid[: len(valid) // 2])
    (d / "valid.tmp").unlink()
    write_v4(d / "episode_20250107_090000_1box_vert_right_core_far.h5", acts, images=textured_frames(18, seed=99))
    expected.update({
        f"unknown_events{TAG}": Defect("event_types", "unknown value(s) ['key_press']"),
        f"not_hdf5{TAG}": Defect("unreadable", "not a readable HDF5 file"),
        f"truncated{TAG}": Defect("unreadable", "not a readable HDF5 file"),
    })
    if warnings:
        black = textured_frames(18, seed=5)
        black[2:4] = 0
        write_v4(d / f"black_frames{TAG}", acts, images=black)
        flat = textured_frames(18, seed=6)
        flat[:] = 128
        write_v4(d / f"constant_frames{TAG}", acts, images=flat)
        expected.update({
            f"black_frames{TAG}": Defect("black_frames", "2 frame(s) [2, 3] are black", "warning"),
            f"constant_frames{TAG}": Defect("constant_frames", "all 18 frames are one flat colour", "warning"),
        })
    return expected
