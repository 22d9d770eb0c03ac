"""Read and check one robot episode file (spec §4, §7): V4 (`images`, BGR) or V5 (`observations/images`, RGB or JPEG).

`check_episode` is the single source of truth for per-file checks: it collects every problem
(error or warning) it can find; the dataset and the training preflight refuse a file with any
error, and `robovlms-mobile data validate` prints them all. Files are untrusted: links and storage are
checked (`storage.py`) before anything is read, and every read is bounded by the sizes checked.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from robovlms_mobile.data.format import (EVENT_TYPES, MAX_EPISODE_FRAMES, MAX_FRAME_SIDE, MAX_JPEG_BYTES, MIN_EPISODE_FRAMES,
                                         V4_IMAGES, V5_IMAGES, instruction_from_name, scenario_of, side_of)
from robovlms_mobile.data.fields import content_hash, read_event_types, read_instruction
from robovlms_mobile.data.decode import ImageError
from robovlms_mobile.data.frames import dark_and_flat_frames, is_jpeg_storage, jpeg_size
from robovlms_mobile.data.storage import StorageError, member, storage_problem
from robovlms_mobile.errors import clip
from robovlms_mobile.task import ACTION_AXES

SIDE_RE = re.compile(r"(?:^|[_\W])(left|right)(?:$|[_\W])")
BLACK_MAX = 10  # a frame whose brightest value is at most this is black (lens cap, camera off)
CONSTANT_STD = 1.0  # a frame whose per-channel pixel std is below this is one flat colour (blank stream)


class EpisodeError(ValueError):
    """An episode file that cannot be used; the message starts with the file path."""

    def __init__(self, path: Path | str, problem: str, problems: list[Problem] | None = None):
        self.path, self.problem = Path(path), problem
        self.problems = problems or []
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Problem:
    """One finding about a file: `error` makes it unusable, `warning` does not."""

    severity: str  # "error" | "warning"
    code: str  # stable identifier, e.g. "too_short", "duplicate"
    message: str


@dataclass(frozen=True)
class Episode:
    """What the dataset keeps in memory for one file: metadata and its (T, 2) actions."""

    path: Path
    generation: str  # "v4" | "v5"
    num_frames: int
    frame_shape: tuple[int, int, int]
    instruction: str
    side: str  # "left" | "right" | "center" | "unknown": for stratified splits only, never for labels
    actions: np.ndarray  # (T, 2) float32, raw velocities [linear_x, linear_y]
    content_hash: str = ""  # sha256 of the actions and the stored image bytes
    scenario: str = "unknown"  # e.g. "1box_hori_left_core_medium" (V4 name), "target_left_straight_path__core__fixed_left" (V5)
    storage: str = "raw"  # "raw" (uint8 arrays) | "jpeg" (the V5 collector's JPEG bytes)

    @property
    def image_key(self) -> str:
        return V4_IMAGES if self.generation == "v4" else V5_IMAGES


@dataclass
class EpisodeCheck:
    """Everything `check_episode` found about one file."""

    path: Path
    generation: str | None = None
    num_frames: int | None = None
    content_hash: str | None = None
    problems: list[Problem] = field(default_factory=list)
    episode: Episode | None = None  # set only when there is no error

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def error(self) -> EpisodeError:
        """All errors as one EpisodeError (messages joined with '; ')."""
        return EpisodeError(self.path, "; ".join(p.message for p in self.errors), self.errors)


def _side_of(path: Path, instruction: str, scenario: str) -> str:
    side = side_of(scenario)
    if side:
        return side
    for value in (path.stem, instruction):
        match = SIDE_RE.search(value.lower())
        if match:
            return match.group(1)
    return "unknown"


def detect_generation(f: h5py.File) -> str:
    """'v4' or 'v5' from the keys present; raises KeyError naming what was expected (links are not followed)."""
    if f.get(V4_IMAGES, getlink=True) is not None:
        return "v4"
    observations = f.get("observations", getlink=True)
    if isinstance(observations, h5py.HardLink) and isinstance(f["observations"], h5py.Group) \
            and f["observations"].get("images", getlink=True) is not None:
        return "v5"
    raise KeyError(f"no image data: expected '{V4_IMAGES}' (V4) or '{V5_IMAGES}' (V5), found keys {sorted(f.keys())[:20]}")


def check_episode(path: Path | str, *, min_length: int, max_speed: float, frames: bool = False,
                  full_length: int | None = None) -> EpisodeCheck:
    """Every problem of one file, errors and warnings; `frames=True` also decodes each frame (black/constant).

    `min_length` is the fewest frames accepted; a file shorter than `full_length` (window + chunk)
    gets a warning saying its missing future steps are masked out of the loss.
    """
    check = EpisodeCheck(Path(path))
    try:
        mode = os.stat(check.path).st_mode
    except OSError as exc:
        check.problems.append(Problem("error", "unreadable", f"not a readable HDF5 file ({exc.strerror})"))
        return check
    if not stat.S_ISREG(mode):
        check.problems.append(Problem("error", "unreadable", "not a readable HDF5 file: not a regular file (a FIFO, device or folder?)"))
        return check
    try:
        f = h5py.File(check.path, "r")
    except OSError as exc:
        check.problems.append(Problem("error", "unreadable", f"not a readable HDF5 file ({exc})"))
        return check
    try:
        with f:
            _check_open_file(f, check, min_length=min_length, max_speed=max_speed, frames=frames, full_length=full_length)
    except StorageError as exc:
        check.problems.append(Problem("error", exc.code, str(exc)))
        check.episode = None
    except (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:  # corrupt data inside a valid header
        check.problems.append(Problem("error", "unreadable", f"HDF5 read failed ({type(exc).__name__}: {exc})"))
        check.episode = None
    return check


def _check_images(images: h5py.Dataset, tag: str, add) -> tuple[tuple[int, int, int] | None, str]:
    """(frame shape, storage) of usable images, else (None, ...) with the problem added."""
    if is_jpeg_storage(images):
        n = images.shape[0]
        if not 1 <= n <= MAX_EPISODE_FRAMES:
            add(Problem("error", "image_shape", f"{tag} '{images.name}' declares {n} JPEG frames; expected 1..{MAX_EPISODE_FRAMES}"))
            return None, "jpeg"
        sizes = set()
        for t, buf in enumerate(images[()]):  # T bounded above; each element's bytes come from the file itself
            if not 0 < buf.size <= MAX_JPEG_BYTES:
                add(Problem("error", "image_data", f"{tag} JPEG frame {t} has {buf.size} bytes; expected 1..{MAX_JPEG_BYTES}"))
                return None, "jpeg"
            try:  # every frame's markers walked: complete (end marker), few scans, pixels the bytes can hold
                sizes.add(jpeg_size(buf))
            except ImageError as exc:
                add(Problem("error", "image_data", f"{tag} JPEG frame {t} of '{images.name}' is not usable: {exc}"))
                return None, "jpeg"
        (h, w), *others = sorted(sizes)
        if others:
            add(Problem("error", "image_shape", f"{tag} JPEG frames have different sizes {sorted(sizes)}; expected one size"))
            return None, "jpeg"
        shape = (h, w, 3)
    elif images.ndim != 4 or images.shape[-1] != 3:
        add(Problem("error", "image_shape", f"{tag} '{images.name}' has shape {images.shape}; expected (T, H, W, 3) colour "
                                            "frames or (T,) JPEG bytes"))
        return None, "raw"
    elif images.dtype != np.uint8:
        add(Problem("error", "image_dtype", f"{tag} '{images.name}' has dtype {images.dtype}; expected uint8"))
        return None, "raw"
    else:
        shape = tuple(int(s) for s in images.shape[1:])
        if not 1 <= images.shape[0] <= MAX_EPISODE_FRAMES:
            add(Problem("error", "image_shape", f"{tag} '{images.name}' declares {images.shape[0]} frames; "
                                                f"expected 1..{MAX_EPISODE_FRAMES}"))
            return None, "raw"
    if not (0 < shape[0] <= MAX_FRAME_SIDE and 0 < shape[1] <= MAX_FRAME_SIDE):
        add(Problem("error", "image_shape", f"{tag} frames are {shape[0]}x{shape[1]}; expected 1..{MAX_FRAME_SIDE} pixels a side"))
        return None, "raw"
    return shape, "jpeg" if is_jpeg_storage(images) else "raw"


def _check_open_file(f: h5py.File, check: EpisodeCheck, *, min_length: int, max_speed: float, frames: bool,
                     full_length: int | None) -> None:
    add = check.problems.append
    path = check.path
    try:
        check.generation = generation = detect_generation(f)
    except KeyError as exc:
        add(Problem("error", "no_images", str(exc.args[0])))
        generation = None
    tag = generation.upper() if generation else "file"
    images = member(f, V4_IMAGES if generation == "v4" else V5_IMAGES, tag) if generation else None
    shape, storage = None, "raw"
    if images is not None:
        if not isinstance(images, h5py.Dataset):
            add(Problem("error", "image_shape", f"{tag} '{images.name}' is a group; expected a (T, H, W, 3) dataset"))
        else:
            problem = storage_problem(images, tag)
            if problem:
                add(problem_of(problem))
            else:
                shape, storage = _check_images(images, tag, add)
    actions = raw = None
    raw = member(f, "actions", tag)
    if raw is None:
        add(Problem("error", "no_actions", f"{tag} file has no 'actions' dataset"))
    elif not isinstance(raw, h5py.Dataset) or raw.ndim != 2 or raw.shape[1] < 2 or raw.shape[1] > 16 \
            or raw.shape[0] > MAX_EPISODE_FRAMES:
        add(Problem("error", "action_shape", f"{tag} 'actions' has shape {getattr(raw, 'shape', None)}; "
                                             "expected (T, 3) [linear_x, linear_y, angular_z]"))
        raw = None
    elif raw.dtype.kind != "f":
        add(Problem("error", "action_dtype", f"{tag} 'actions' has dtype {raw.dtype}; expected float32 or float64"))
        raw = None
    elif (problem := storage_problem(raw, tag)):
        add(problem_of(problem))
        raw = None
    else:
        actions = np.asarray(raw[:, : len(ACTION_AXES)], dtype=np.float32)
    n_frames = int(images.shape[0]) if shape is not None else None
    check.num_frames = n_frames if n_frames is not None else (len(actions) if actions is not None else None)
    events = _check_events(f, check, tag, n_frames) if generation == "v4" else None
    if generation == "v4" and actions is not None and len(actions) and not np.any(raw[()]) \
            and events is not None and "episode_start" not in events:
        check.problems[:] = [Problem("error", "earliest_collector",
                                     f"{tag} file from the earliest V4 collector (every action is STOP, no 'episode_start' "
                                     "event, no scenario): nothing to learn from; record it again with the current collector")]
        return
    if actions is not None:
        _check_actions(actions, check, tag, n_frames, min_length, max_speed, full_length)
    instruction = ""
    lang = member(f, "language_instruction", tag)
    if lang is not None:
        try:
            instruction = read_instruction(lang, tag)
        except ValueError as exc:
            add(Problem("error", "instruction", str(exc)))
            instruction = None
    elif (from_name := instruction_from_name(path)) is not None:
        instruction = from_name
    if instruction == "":
        add(Problem("error", "no_instruction",
                    f"{tag} file has no 'language_instruction' and the file name names no scenario (…_1box_hori_left_…)"))
    if shape is not None and frames and n_frames:
        _check_frames(images, storage, check, tag)
    if shape is not None and raw is not None and actions is not None:
        check.content_hash = content_hash(path, images, raw)
    if not check.errors:
        scenario = scenario_of(path, f.attrs)
        check.episode = Episode(
            path=path, generation=generation, num_frames=n_frames, frame_shape=shape, instruction=instruction,
            side=_side_of(path, instruction, scenario), actions=actions, content_hash=check.content_hash or "",
            scenario=scenario, storage=storage,
        )


def problem_of(error: StorageError) -> Problem:
    """A storage refusal as an error Problem."""
    return Problem("error", error.code, str(error))


def _check_actions(actions: np.ndarray, check: EpisodeCheck, tag: str, n_frames: int | None, min_length: int,
                   max_speed: float, full_length: int | None) -> None:
    add = check.problems.append
    if n_frames is not None and len(actions) != n_frames:
        add(Problem("error", "count_mismatch", f"{tag} file has {n_frames} frames but {len(actions)} actions"))
    elif len(actions) < min_length:
        need = f"window + chunk = {min_length} (require_full_chunks)" if min_length > MIN_EPISODE_FRAMES else f"{min_length} frames"
        add(Problem("error", "too_short", f"{tag} file has {len(actions)} frames; need at least {need}"))
    elif full_length and len(actions) < full_length:
        add(Problem("warning", "short", f"{tag} file has {len(actions)} frames < window + chunk = {full_length}: "
                                        "trains with the missing future steps masked out of the loss"))
    finite = np.isfinite(actions)
    if not finite.all():
        bad = np.argwhere(~finite)
        kinds = "/".join(k for k, m in (("NaN", np.isnan(actions).any()), ("inf", np.isinf(actions).any())) if m)
        add(Problem("error", "non_finite",
                    f"{tag} 'actions' contains NaN/inf ({kinds}; first at step {int(bad[0][0])}, {len(bad)} value(s))"))
    peak = float(np.abs(np.where(finite, actions, 0.0)).max(initial=0.0))
    if peak > max_speed + 1e-6:
        step = int(np.argmax(np.abs(np.where(finite, actions, 0.0)).max(axis=1)))
        add(Problem("error", "over_speed", f"{tag} |action| reaches {peak:.3f} > max_speed {max_speed} (step {step}); "
                                           "raise max_speed in the dataset config"))


def _check_events(f: h5py.File, check: EpisodeCheck, tag: str, n_frames: int | None) -> list[str] | None:
    raw = member(f, "action_event_types", tag)
    if raw is None:
        check.problems.append(Problem("warning", "no_events", f"{tag} file has no 'action_event_types'"))
        return None
    if not isinstance(raw, h5py.Dataset) or raw.ndim != 1 or raw.shape[0] > MAX_EPISODE_FRAMES or raw.dtype.kind not in "SOU":
        check.problems.append(Problem("error", "event_types", f"{tag} 'action_event_types' has shape "
                                                              f"{getattr(raw, 'shape', None)}; expected (T,) strings"))
        return None
    problem = storage_problem(raw, tag)
    if problem:
        check.problems.append(problem_of(problem))
        return None
    events = read_event_types(f)
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        steps = [t for t, e in enumerate(events) if e not in EVENT_TYPES]
        shown = ", ".join(clip(v) for v in unknown[:10])
        check.problems.append(Problem("error", "event_types", f"{tag} 'action_event_types' has unknown value(s) [{shown}] "
                                                              f"at step(s) {steps[:10]}; expected {list(EVENT_TYPES)}"))
    if n_frames is not None and len(events) != n_frames:
        check.problems.append(Problem("error", "event_types",
                                      f"{tag} 'action_event_types' has {len(events)} entries for {n_frames} frames"))
    elif events and events[0] != "episode_start":
        check.problems.append(Problem("warning", "event_types", f"{tag} first event is {clip(events[0])}, not 'episode_start'"))
    return events


def _check_frames(images: h5py.Dataset, storage: str, check: EpisodeCheck, tag: str) -> None:
    try:
        black, flat = dark_and_flat_frames(images, storage, BLACK_MAX, CONSTANT_STD)
    except ImageError as exc:
        check.problems.append(Problem("error", "image_data", f"{tag} {exc}"))
        return
    n = images.shape[0]
    for code, steps, what in (("black_frames", black, f"black (max value <= {BLACK_MAX})"),
                              ("constant_frames", flat, "one flat colour (camera frozen or blank?)")):
        if steps:
            which = f"all {n} frames are" if len(steps) == n else f"{len(steps)} frame(s) {steps[:10]} are"
            check.problems.append(Problem("warning", code, f"{tag} {which} {what}"))
