"""Read and check one robot episode file (spec §4): V4 (`images`, BGR) or V5 (`observations/images`, RGB).

`check_episode` is the single source of truth for per-file checks: it collects every problem
(error or warning) it can find; `load_episode` (the dataset) refuses a file with any error, and
`robovlms-mobile data validate` prints them all.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

V4_IMAGES = "images"
V5_IMAGES = "observations/images"
ACTION_AXES = ("linear_x", "linear_y")
EVENT_TYPES = ("episode_start", "start_action", "stop_action")
NAME_RE = re.compile(
    r"(?P<boxes>[12]box)_(?P<layout>hori|vert)_(?P<side>left|right)_(?P<variant>core|variant)_(?P<distance>close|medium|far)"
)
SIDE_RE = re.compile(r"(?:^|[_\W])(left|right)(?:$|[_\W])")
BLACK_MAX = 10  # a frame whose brightest value is at most this is black (lens cap, camera off)
CONSTANT_STD = 1.0  # a frame whose per-channel pixel std is below this is one flat colour (blank stream)
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> content hash, per process


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
    side: str  # "left" | "right" | "unknown": for stratified splits only, never for labels
    actions: np.ndarray  # (T, 2) float32, raw velocities [linear_x, linear_y]
    content_hash: str = ""  # sha256 of the actions and the stored image bytes
    scenario: str = "unknown"  # e.g. "1box_hori_left_core_medium" (V4 name / V5 attrs)

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


def scenario_of(path: Path | str, attrs: dict | h5py.AttributeManager | None = None) -> str:
    """Scenario tag from a V4 file name, else V5 attrs (`scenario`, `pattern`, `distance`), else 'unknown'."""
    match = NAME_RE.search(Path(path).stem)
    if match is None and attrs is not None:
        parts = [_text(attrs.get(k, "")) for k in ("scenario", "pattern", "distance")]
        match = NAME_RE.search("_".join(parts))
    return match.group(0) if match else "unknown"


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


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
    return _text(value).strip("\x00").strip()


def detect_generation(f: h5py.File) -> str:
    """'v4' or 'v5' from the keys present; raises KeyError naming what was expected."""
    if V4_IMAGES in f and isinstance(f[V4_IMAGES], h5py.Dataset):
        return "v4"
    if V5_IMAGES in f:
        return "v5"
    raise KeyError(f"no image data: expected '{V4_IMAGES}' (V4) or '{V5_IMAGES}' (V5), found keys {sorted(f.keys())}")


def content_hash(path: Path, images: h5py.Dataset, actions: h5py.Dataset) -> str:
    """sha256 of the actions and the *stored* image bytes (compressed chunks: no decompression).

    Two files are duplicates when they hold the same recording byte for byte (a copy, a rename);
    memoised per process on (path, size, mtime_ns), so a second scan costs nothing.
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    h = hashlib.sha256()
    h.update(f"{images.shape}|{images.dtype}|{actions.shape}|{actions.dtype}".encode())
    h.update(np.ascontiguousarray(actions[()]).tobytes())
    dsid = images.id
    if images.chunks is None:
        h.update(np.ascontiguousarray(images[()]).tobytes())
    else:
        infos = sorted((dsid.get_chunk_info(i) for i in range(dsid.get_num_chunks())), key=lambda c: c.chunk_offset)
        for info in infos:
            h.update(dsid.read_direct_chunk(info.chunk_offset)[1])
    _HASHES[key] = digest = h.hexdigest()
    return digest


def read_actions(f: h5py.File) -> np.ndarray:
    """All action columns as float32 (T, 3) [linear_x, linear_y, angular_z] (angular_z 0 when absent)."""
    raw = np.asarray(f["actions"][()], dtype=np.float32)
    out = np.zeros((len(raw), 3), np.float32)
    out[:, : min(3, raw.shape[1])] = raw[:, :3]
    return out


def read_event_types(f: h5py.File) -> list[str] | None:
    """V4 `action_event_types` as str, or None when the file has none."""
    if "action_event_types" not in f:
        return None
    return [_text(v) for v in np.asarray(f["action_event_types"][()]).reshape(-1)]


def check_episode(path: Path | str, *, min_length: int, max_speed: float, frames: bool = False) -> EpisodeCheck:
    """Every problem of one file, errors and warnings; `frames=True` also decodes each frame (black/constant)."""
    check = EpisodeCheck(Path(path))
    try:
        f = h5py.File(check.path, "r")
    except OSError as exc:
        check.problems.append(Problem("error", "unreadable", f"not a readable HDF5 file ({exc})"))
        return check
    try:
        with f:
            _check_open_file(f, check, min_length=min_length, max_speed=max_speed, frames=frames)
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:  # corrupt data inside a valid header
        check.problems.append(Problem("error", "unreadable", f"HDF5 read failed ({type(exc).__name__}: {exc})"))
        check.episode = None
    return check


def _check_open_file(f: h5py.File, check: EpisodeCheck, *, min_length: int, max_speed: float, frames: bool) -> None:
    add = check.problems.append
    path = check.path
    try:
        check.generation = generation = detect_generation(f)
    except KeyError as exc:
        add(Problem("error", "no_images", str(exc.args[0])))
        generation = None
    tag = generation.upper() if generation else "file"
    images = f[V4_IMAGES if generation == "v4" else V5_IMAGES] if generation else None
    images_ok = False
    if images is not None:
        if not isinstance(images, h5py.Dataset):
            add(Problem("error", "image_shape", f"{tag} '{images.name}' is a group; expected a (T, H, W, 3) dataset"))
        elif images.ndim != 4 or images.shape[-1] != 3:
            add(Problem("error", "image_shape", f"{tag} '{images.name}' has shape {images.shape}; expected (T, H, W, 3) colour frames"))
        elif images.dtype != np.uint8:
            add(Problem("error", "image_dtype", f"{tag} '{images.name}' has dtype {images.dtype}; expected uint8"))
        else:
            images_ok = True
    actions = raw = None
    if "actions" not in f:
        add(Problem("error", "no_actions", f"{tag} file has no 'actions' dataset"))
    else:
        raw = f["actions"]
        if not isinstance(raw, h5py.Dataset) or raw.ndim != 2 or raw.shape[1] < 2:
            add(Problem("error", "action_shape", f"{tag} 'actions' has shape {getattr(raw, 'shape', None)}; "
                                                 "expected (T, 3) [linear_x, linear_y, angular_z]"))
        elif raw.dtype.kind != "f":
            add(Problem("error", "action_dtype", f"{tag} 'actions' has dtype {raw.dtype}; expected float32"))
        else:
            actions = np.asarray(raw[:, :2], dtype=np.float32)
    n_frames = int(images.shape[0]) if images_ok else None
    check.num_frames = n_frames if n_frames is not None else (len(actions) if actions is not None else None)
    if actions is not None:
        if n_frames is not None and len(actions) != n_frames:
            add(Problem("error", "count_mismatch", f"{tag} file has {n_frames} frames but {len(actions)} actions"))
        elif len(actions) < min_length:
            add(Problem("error", "too_short", f"{tag} file has {len(actions)} frames; need at least window + chunk = {min_length}"))
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
    if generation == "v4":
        _check_events(f, check, tag, n_frames)
    if "language_instruction" in f:
        instruction = _decode_instruction(f["language_instruction"])
    else:
        instruction = instruction_from_name(path) or ""
    if not instruction:
        add(Problem("error", "no_instruction",
                    f"{tag} file has no 'language_instruction' and the file name names no scenario (…_1box_hori_left_…)"))
    if images_ok and frames and n_frames:
        _check_frames(images, check, tag)
    if images_ok and raw is not None and actions is not None:
        check.content_hash = content_hash(path, images, raw)
    if not check.errors:
        check.episode = Episode(
            path=path, generation=generation, num_frames=n_frames, frame_shape=tuple(int(s) for s in images.shape[1:]),
            instruction=instruction, side=_side_of(path, instruction), actions=actions,
            content_hash=check.content_hash or "", scenario=scenario_of(path, f.attrs),
        )


def _check_events(f: h5py.File, check: EpisodeCheck, tag: str, n_frames: int | None) -> None:
    events = read_event_types(f)
    if events is None:
        check.problems.append(Problem("warning", "no_events", f"{tag} file has no 'action_event_types'"))
        return
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        steps = [t for t, e in enumerate(events) if e not in EVENT_TYPES]
        check.problems.append(Problem("error", "event_types", f"{tag} 'action_event_types' has unknown value(s) {unknown} "
                                                              f"at step(s) {steps[:10]}; expected {list(EVENT_TYPES)}"))
    if n_frames is not None and len(events) != n_frames:
        check.problems.append(Problem("error", "event_types",
                                      f"{tag} 'action_event_types' has {len(events)} entries for {n_frames} frames"))
    elif events and events[0] != "episode_start":
        check.problems.append(Problem("warning", "event_types", f"{tag} first event is {events[0]!r}, not 'episode_start'"))


def _check_frames(images: h5py.Dataset, check: EpisodeCheck, tag: str) -> None:
    black, flat = [], []
    for t in range(images.shape[0]):  # one frame at a time: a 720x1280 episode is 50 MB decoded
        frame = images[t]
        if int(frame.max()) <= BLACK_MAX:
            black.append(t)
        elif float(frame.reshape(-1, frame.shape[-1]).std(axis=0).max()) < CONSTANT_STD:  # flat in every channel
            flat.append(t)
    n = images.shape[0]
    for code, steps, what in (("black_frames", black, f"black (max value <= {BLACK_MAX})"),
                              ("constant_frames", flat, "one flat colour (camera frozen or blank?)")):
        if steps:
            which = f"all {n} frames are" if len(steps) == n else f"{len(steps)} frame(s) {steps[:10]} are"
            check.problems.append(Problem("warning", code, f"{tag} {which} {what}"))


def load_episode(path: Path | str, *, min_length: int, max_speed: float) -> Episode:
    """Open, check and summarise one file; raises EpisodeError naming the file and every error found."""
    check = check_episode(path, min_length=min_length, max_speed=max_speed)
    if check.errors:
        raise check.error()
    return check.episode


def read_frames_rgb(f: h5py.File, episode: Episode, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) as RGB uint8 (n, H, W, 3), reading only those chunks."""
    frames = f[episode.image_key][start:stop]
    return frames[..., ::-1] if episode.generation == "v4" else frames


def read_frames_stored(f: h5py.File, episode: Episode, start: int, stop: int) -> tuple[np.ndarray, bool]:
    """Frames [start, stop) as stored (n, H, W, 3) and whether that order is BGR (V4): swap after resizing."""
    return f[episode.image_key][start:stop], episode.generation == "v4"
