"""Read and check one robot episode file (spec §4): V4 (`images`, BGR) or V5 (`observations/images`, RGB)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

V4_IMAGES = "images"
V5_IMAGES = "observations/images"
ACTION_AXES = ("linear_x", "linear_y")
NAME_RE = re.compile(
    r"(?P<boxes>[12]box)_(?P<layout>hori|vert)_(?P<side>left|right)_(?P<variant>core|variant)_(?P<distance>close|medium|far)"
)
SIDE_RE = re.compile(r"(?:^|[_\W])(left|right)(?:$|[_\W])")


class EpisodeError(ValueError):
    """An episode file that cannot be used; the message starts with the file path."""

    def __init__(self, path: Path | str, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Episode:
    """What the dataset keeps in memory for one file: metadata and its (T, 2) actions."""

    path: Path
    generation: str  # "v4" | "v5"
    num_frames: int
    frame_shape: tuple[int, int, int]
    instruction: str
    side: str  # "left" | "right" | "unknown": for stratified splits only, never for labels
    actions: np.ndarray  # (T, 2) float32, raw velocities [linear_x, linear_y]

    @property
    def image_key(self) -> str:
        return V4_IMAGES if self.generation == "v4" else V5_IMAGES


def instruction_for(n_boxes: int, side: str) -> str:
    """The instruction text for a scenario, as the collector's file names describe it."""
    if n_boxes not in (1, 2) or side not in ("left", "right"):
        raise ValueError(f"no instruction for n_boxes={n_boxes!r}, side={side!r}")
    obstacle = "box" if n_boxes == 1 else "boxes"
    return f"go around the {obstacle} on the {side} and stop in front of the bottle"


def instruction_from_name(path: Path | str) -> str | None:
    """Instruction derived from a V4 file name (`..._1box_hori_left_...`), or None."""
    match = NAME_RE.search(Path(path).stem)
    if match is None:
        return None
    return instruction_for(int(match["boxes"][0]), match["side"])


def _side_of(path: Path, instruction: str) -> str:
    for text in (path.stem, instruction):
        match = SIDE_RE.search(text.lower())
        if match:
            return match.group(1)
    return "unknown"


def _decode_instruction(raw) -> str:
    value = raw[()] if isinstance(raw, h5py.Dataset) else raw
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip("\x00").strip()


def detect_generation(f: h5py.File) -> str:
    """'v4' or 'v5' from the keys present; raises KeyError naming what was expected."""
    if V4_IMAGES in f and isinstance(f[V4_IMAGES], h5py.Dataset):
        return "v4"
    if V5_IMAGES in f:
        return "v5"
    raise KeyError(f"no image data: expected '{V4_IMAGES}' (V4) or '{V5_IMAGES}' (V5), found keys {sorted(f.keys())}")


def load_episode(path: Path | str, *, min_length: int, max_speed: float) -> Episode:
    """Open, check and summarise one file; raises EpisodeError naming the file and the problem."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise EpisodeError(path, f"not a readable HDF5 file ({exc})") from None
    with f:
        try:
            generation = detect_generation(f)
        except KeyError as exc:
            raise EpisodeError(path, str(exc.args[0])) from None
        tag = generation.upper()
        images = f[V4_IMAGES if generation == "v4" else V5_IMAGES]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise EpisodeError(path, f"{tag} '{images.name}' has shape {images.shape}; expected (T, H, W, 3) colour frames")
        if images.dtype != np.uint8:
            raise EpisodeError(path, f"{tag} '{images.name}' has dtype {images.dtype}; expected uint8")
        if "actions" not in f:
            raise EpisodeError(path, f"{tag} file has no 'actions' dataset")
        raw = f["actions"]
        if raw.ndim != 2 or raw.shape[1] < 2:
            raise EpisodeError(path, f"{tag} 'actions' has shape {raw.shape}; expected (T, 3) [linear_x, linear_y, angular_z]")
        if raw.dtype.kind != "f":
            raise EpisodeError(path, f"{tag} 'actions' has dtype {raw.dtype}; expected float32")
        actions = np.asarray(raw[:, :2], dtype=np.float32)
        if len(actions) != images.shape[0]:
            raise EpisodeError(path, f"{tag} file has {images.shape[0]} frames but {len(actions)} actions")
        if len(actions) < min_length:
            raise EpisodeError(path, f"{tag} file has {len(actions)} frames; need at least window + chunk = {min_length}")
        if not np.isfinite(actions).all():
            bad = int(np.argwhere(~np.isfinite(actions))[0][0])
            raise EpisodeError(path, f"{tag} 'actions' contains NaN/inf (first at step {bad})")
        peak = float(np.abs(actions).max(initial=0.0))
        if peak > max_speed + 1e-6:
            raise EpisodeError(path, f"{tag} |action| reaches {peak:.3f} > max_speed {max_speed}; raise max_speed in the dataset config")
        if "language_instruction" in f:
            instruction = _decode_instruction(f["language_instruction"])
        else:
            instruction = instruction_from_name(path) or ""
        if not instruction:
            raise EpisodeError(path, f"{tag} file has no 'language_instruction' and the file name names no scenario (…_1box_hori_left_…)")
        return Episode(
            path=path,
            generation=generation,
            num_frames=int(images.shape[0]),
            frame_shape=tuple(int(s) for s in images.shape[1:]),
            instruction=instruction,
            side=_side_of(path, instruction),
            actions=actions,
        )


def read_frames_rgb(f: h5py.File, episode: Episode, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) as RGB uint8 (n, H, W, 3), reading only those chunks."""
    frames = f[episode.image_key][start:stop]
    return frames[..., ::-1] if episode.generation == "v4" else frames
