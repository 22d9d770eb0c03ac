"""`robovlms-mobile data convert`: ROS 2 bags (rosbag2, MCAP storage) and V5 files -> V4 episode files.

A bag holds a camera topic (`sensor_msgs/msg/Image` or `CompressedImage`) and `/cmd_vel`
(`geometry_msgs/msg/Twist`, or `TwistStamped`). Frames are taken
- `change` (default, as the original keyboard collector recorded): frame 0 is the first camera
  image (`episode_start`, zero action); then one frame per /cmd_vel message whose velocity differs
  from the previous command, showing the newest image at or before that command;
- `rate`: every 1/fps seconds from the first image, with the command in force at that time.
Times are the bag's log times. Instruction and scenario come from flags (spec §4 file names).
"""

from __future__ import annotations

import heapq
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from robovlms_mobile.data.episode import check_episode
from robovlms_mobile.data.fields import read_actions
from robovlms_mobile.data.format import NAME_RE, instruction_for
from robovlms_mobile.data.frames import read_frames_rgb
from robovlms_mobile.data.writers import CHUNK_SIZE, event_types_for, write_episode_v4
from robovlms_mobile.outputs import OutputError, claim, written

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/Image")
COMPRESSED_TYPES = ("sensor_msgs/msg/CompressedImage", "sensor_msgs/CompressedImage")
TWIST_TYPES = ("geometry_msgs/msg/Twist", "geometry_msgs/Twist", "geometry_msgs/msg/TwistStamped", "geometry_msgs/TwistStamped")
ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "rgba8": (4, False), "bgra8": (4, True)}  # channels, BGR order
MODES = ("change", "rate")


class ConversionError(ValueError):
    """A source that cannot be converted; the message names the file and what was expected."""


@dataclass
class Recording:
    """Frames picked from a bag: RGB images, [linear_x, linear_y, angular_z] actions, event types, log times."""

    images: np.ndarray  # (T, H, W, 3) uint8 RGB
    actions: np.ndarray  # (T, 3) float32
    events: list[str]
    times_ns: np.ndarray  # (T,) int64


def bag_files(path: str | Path) -> list[Path]:
    """The .mcap files of a bag: the file itself, or a rosbag2 folder (metadata.yaml order, else sorted)."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".mcap":
            raise ConversionError(f"{path}: not an MCAP file (.mcap) or rosbag2 folder")
        return [path]
    meta = path / "metadata.yaml"
    if meta.is_file():
        import yaml

        info = (yaml.safe_load(meta.read_text()) or {}).get("rosbag2_bagfile_information", {})
        storage = info.get("storage_identifier", "mcap")
        if storage != "mcap":
            raise ConversionError(f"{path}: rosbag2 storage {storage!r} is not supported; convert it with "
                                  f"`ros2 bag convert` to storage 'mcap'")
        files = [path / f for f in info.get("relative_file_paths", [])]
        if files:
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise ConversionError(f"{path}: metadata.yaml lists missing file(s) {missing}")
            return files
    files = sorted(path.glob("*.mcap"))
    if not files:
        raise ConversionError(f"{path}: no .mcap files (expected an MCAP file or a rosbag2 folder with MCAP storage)")
    return files


def _messages(files: list[Path], topics: list[str]) -> Iterator[tuple[int, str, str, Any]]:
    """(log_time, topic, schema name, decode()) over all files, in log-time order."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    factory = DecoderFactory()

    def one(path: Path) -> Iterator[tuple[int, int, str, str, Any]]:
        with open(path, "rb") as fh:
            reader = make_reader(fh)
            for k, (schema, channel, message) in enumerate(reader.iter_messages(topics=topics, log_time_order=True)):
                decoder = factory.decoder_for(channel.message_encoding, schema)
                if decoder is None:
                    raise ConversionError(f"{path}: topic {channel.topic} has encoding {channel.message_encoding!r} / schema "
                                          f"{getattr(schema, 'encoding', None)!r}; expected ROS 2 'cdr' / 'ros2msg'")
                yield message.log_time, k, channel.topic, schema.name, (lambda d=decoder, m=message: d(m.data))

    for t, _, topic, schema_name, decode in heapq.merge(*(one(f) for f in files), key=lambda r: (r[0], r[1])):
        yield t, topic, schema_name, decode


def bag_topics(files: list[Path]) -> dict[str, str]:
    """{topic: schema name} from the bag summaries."""
    from mcap.reader import make_reader

    topics = {}
    for path in files:
        with open(path, "rb") as fh:
            try:
                summary = make_reader(fh).get_summary()
            except Exception as exc:  # mcap raises several types on a damaged file
                raise ConversionError(f"{path}: not a readable MCAP file ({type(exc).__name__}: {exc})") from None
        if summary is not None:
            topics.update({c.topic: summary.schemas[c.schema_id].name if c.schema_id in summary.schemas else "?"
                           for c in summary.channels.values()})
    return topics


def image_to_rgb(msg: Any, schema_name: str, where: str) -> np.ndarray:
    """A decoded Image / CompressedImage message as (H, W, 3) uint8 RGB."""
    if schema_name in COMPRESSED_TYPES:
        from PIL import Image

        try:
            return np.asarray(Image.open(io.BytesIO(bytes(msg.data))).convert("RGB"))
        except Exception as exc:
            raise ConversionError(f"{where}: CompressedImage (format {msg.format!r}) does not decode ({exc})") from None
    encoding = msg.encoding.lower()
    if encoding not in ENCODINGS:
        raise ConversionError(f"{where}: Image encoding {msg.encoding!r}; expected one of {sorted(ENCODINGS)} (colour frames)")
    channels, bgr = ENCODINGS[encoding]
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if len(data) < msg.height * msg.step or msg.step < msg.width * channels:
        raise ConversionError(f"{where}: Image data has {len(data)} bytes for {msg.height}x{msg.width} {encoding} (step {msg.step})")
    rows = data[: msg.height * msg.step].reshape(msg.height, msg.step)
    img = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)[..., :3]
    return np.ascontiguousarray(img[..., ::-1] if bgr else img)


def _twist(msg: Any) -> np.ndarray:
    twist = getattr(msg, "twist", msg)  # TwistStamped
    return np.array([twist.linear.x, twist.linear.y, twist.angular.z], np.float32)


def read_bag(path: str | Path, *, camera_topic: str, cmd_topic: str = "/cmd_vel", mode: str = "change",
             fps: float | None = None) -> Recording:
    """Pick frames and actions from a bag (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "rate" and not (fps and fps > 0):
        raise ConversionError("--frames rate needs --fps > 0")
    files = bag_files(path)
    topics = bag_topics(files)
    for topic, kinds, flag in ((camera_topic, IMAGE_TYPES + COMPRESSED_TYPES, "--camera-topic"), (cmd_topic, TWIST_TYPES, "--cmd-topic")):
        if topic not in topics:
            raise ConversionError(f"{path}: no topic {topic!r}; the bag has {dict(sorted(topics.items()))} (choose with {flag})")
        if topics[topic] not in kinds:
            raise ConversionError(f"{path}: topic {topic!r} is {topics[topic]}; expected one of {list(kinds)}")
    images, actions, times, events = [], [], [], []
    latest: tuple[int, str, Any] | None = None  # newest camera message, decoded lazily
    decoded: dict[int, np.ndarray] = {}
    command, pending = np.zeros(3, np.float32), []

    def emit(t: int, action: np.ndarray) -> None:
        t_img, schema_name, decode = latest
        if t_img not in decoded:
            decoded.clear()
            decoded[t_img] = image_to_rgb(decode(), schema_name, f"{path}: {camera_topic} at {t_img} ns")
        frame = decoded[t_img]
        if images and frame.shape != images[0].shape:
            raise ConversionError(f"{path}: {camera_topic} changes frame size {images[0].shape} -> {frame.shape}")
        images.append(frame)
        actions.append(action.copy())
        times.append(t)
        events.append("episode_start" if len(events) == 0 else "start_action" if np.any(action != 0) else "stop_action")

    from mcap.exceptions import McapError

    t0, k = None, 0  # rate mode: frame k at t0 + k / fps

    def next_t() -> int | None:
        return None if t0 is None else t0 + round(k * 1e9 / fps)

    messages = _messages(files, [camera_topic, cmd_topic])
    while True:
        try:
            t, topic, schema_name, decode = next(messages)
            if topic == cmd_topic:
                new = _twist(decode())
        except StopIteration:
            break
        except McapError as exc:
            raise ConversionError(f"{path}: damaged MCAP data ({type(exc).__name__}: {exc})") from None
        if mode == "rate" and t0 is not None:
            while next_t() < t:
                emit(next_t(), command)
                k += 1
        if topic == camera_topic:
            latest = (t, schema_name, decode)
            if mode == "rate" and t0 is None:
                t0 = t
            elif mode == "change" and not images:
                emit(t, np.zeros(3, np.float32))
            for t_cmd, action in pending:
                emit(t_cmd, action)
            pending.clear()
        else:
            if mode == "change" and not np.array_equal(new, command):
                if latest is None:
                    pending.append((t, new))
                else:
                    emit(t, new)
            command = new
    if mode == "rate" and t0 is not None:
        while next_t() <= latest[0]:
            emit(next_t(), command)
            k += 1
    if not images:
        raise ConversionError(f"{path}: no messages on {camera_topic}")
    if len(images) < 2:
        raise ConversionError(f"{path}: only {len(images)} frame(s) (no velocity change on {cmd_topic}?)")
    return Recording(np.stack(images), np.stack(actions).astype(np.float32), events, np.array(times, np.int64))


def episode_name(start_ns: int, label: str) -> str:
    """`episode_<YYYYmmdd_HHMMSS>_<label>.h5` with the start time in UTC."""
    stamp = datetime.fromtimestamp(start_ns / 1e9, tz=timezone.utc)
    return f"episode_{stamp:%Y%m%d_%H%M%S}_{label}.h5"


def check_scenario(scenario: str | None) -> str | None:
    """A scenario tag such as `1box_hori_left_core_medium`, checked; None passes through."""
    if scenario is not None and NAME_RE.fullmatch(scenario) is None:
        raise ConversionError(f"--scenario {scenario!r}: expected <1box|2box>[_<hori|vert>]_<left|right>[_<core|variant>][_<close|medium|far>]")
    return scenario


def convert_bag(path: str | Path, out_dir: str | Path, *, camera_topic: str, cmd_topic: str = "/cmd_vel",
                mode: str = "change", fps: float | None = None, scenario: str | None = None,
                instruction: str | None = None, overwrite: bool = False, run: Outputs | None = None) -> Path:
    """One bag -> one V4 file in out_dir (named from the start time and the scenario); returns its path."""
    scenario = check_scenario(scenario)
    if instruction is None and scenario is None:
        raise ConversionError(f"{path}: give --scenario (the file name then names the instruction) and/or --instruction")
    if instruction is None:
        match = NAME_RE.fullmatch(scenario)
        instruction = instruction_for(int(match["boxes"][0]), match["side"])
    rec = read_bag(path, camera_topic=camera_topic, cmd_topic=cmd_topic, mode=mode, fps=fps)
    label = scenario or "".join(c if c.isalnum() else "-" for c in Path(path).stem)
    out = (run or Outputs([path])).target(Path(out_dir) / episode_name(int(rec.times_ns[0]), label), path, overwrite)
    start = datetime.fromtimestamp(rec.times_ns[0] / 1e9, tz=timezone.utc)
    attrs = {"obstacle_layout_type": "_".join(scenario.split("_")[:2]) if scenario else "unknown",
             "collection_datetime": start.isoformat(), "total_duration": float(rec.times_ns[-1] - rec.times_ns[0]) / 1e9,
             "action_chunk_size": CHUNK_SIZE, "source": str(Path(path).name), "frames_mode": mode,
             "camera_topic": camera_topic, "cmd_topic": cmd_topic}
    if len(rec.times_ns) <= 4096:  # HDF5 attributes are limited to 64 KiB
        attrs["frame_times_ns"] = rec.times_ns
    if fps:
        attrs["fps"] = float(fps)
    write_episode_v4(out, rec.images, rec.actions, rec.events, instruction=instruction, attrs=attrs)
    written(out)
    return out


def convert_v5(path: str | Path, out_dir: str | Path, *, overwrite: bool = False, run: Outputs | None = None) -> Path:
    """A V5 file -> a V4 file of the same name in out_dir: BGR frames, event types from the actions, attrs kept."""
    path = Path(path)
    check = check_episode(path, min_length=1, max_speed=float("inf"))
    if check.errors:
        raise ConversionError(f"{path}: cannot convert: " + "; ".join(p.message for p in check.errors))
    if check.generation != "v5":
        raise ConversionError(f"{path}: is {check.generation.upper()}, not V5")
    out = (run or Outputs([path])).target(Path(out_dir) / path.name, path, overwrite)
    ep = check.episode
    with h5py.File(path, "r") as f:
        images = read_frames_rgb(f, ep, 0, ep.num_frames)
        actions = read_actions(f)
        source_attrs = {f"v5_{k}": v for k, v in f.attrs.items()}
        layout = NAME_RE.search(ep.scenario)
    attrs = {"obstacle_layout_type": f"{layout['boxes']}_{layout['layout'] or 'hori'}" if layout else "unknown",
             "collection_datetime": "", "source": path.name, "converted_from": "v5", **source_attrs}
    write_episode_v4(out, images, actions, event_types_for(actions), instruction=ep.instruction, attrs=attrs)
    written(out)
    return out


def is_bag(path: Path) -> bool:
    """An .mcap file or a folder holding metadata.yaml / .mcap files."""
    if path.is_file():
        return path.suffix == ".mcap"
    return path.is_dir() and ((path / "metadata.yaml").is_file() or any(path.glob("*.mcap")))


def _check_written(path: Path) -> None:
    check = check_episode(path, min_length=1, max_speed=float("inf"))
    if check.errors:  # a bug here, not in the input
        raise ConversionError(f"{path}: converted file fails its own checks: " + "; ".join(p.message for p in check.errors))


class Outputs:
    """The output files of one convert run: never an input, never twice, replacing only with --overwrite (named)."""

    def __init__(self, inputs: list[Path]):
        self.inputs = list(inputs)
        self.taken: dict[Path, Path] = {}  # resolved output -> the source it came from
        self.replaced: list[Path] = []

    def target(self, out: Path, source: str | Path, overwrite: bool) -> Path:
        """`out` for `source`, checked (outputs.claim); refused when another source of this run already wrote it."""
        key = out.resolve()
        if key in self.taken:
            raise ConversionError(f"{source}: its V4 file {out} was already written from {self.taken[key]} in this run "
                                  "(two sources give the same name); convert them into separate --out folders")
        if any(Path(p).resolve() == key for p in self.inputs) or out.resolve() == Path(source).resolve():
            raise ConversionError(f"{source}: --out must be another folder ({out} is one of the sources)")
        try:
            claim(out, self.inputs, overwrite=overwrite)
        except OutputError as exc:
            raise ConversionError(f"{exc} (or pass --overwrite)" if out.exists() and not overwrite else str(exc)) from None
        if out.exists():
            self.replaced.append(out)
        self.taken[key] = Path(source)
        return out


def convert_any(sources: list[str | Path], out_dir: str | Path, *, progress: bool = False,
                replaced: list[Path] | None = None, **bag_kwargs: Any) -> tuple[list[Path], list[str]]:
    """Convert each source (bag, bag folder, V5 file, folder of V5 files); returns (written, errors), never stopping early.

    `replaced`, when given, receives the existing files that --overwrite replaced."""
    done, errors = [], []
    jobs: list[tuple[str, Path]] = []
    for src in map(Path, sources):
        if is_bag(src):
            jobs.append(("bag", src))
        elif src.is_file():
            jobs.append(("v5", src))
        elif src.is_dir():
            found = sorted(src.rglob("*.h5"))
            if not found:
                errors.append(f"{src}: no .mcap bag and no .h5 files")
            jobs += [("v5", p) for p in found]
        else:
            errors.append(f"{src}: does not exist")
    overwrite = bag_kwargs.pop("overwrite", False)
    run = Outputs([src for _, src in jobs])
    for kind, src in tqdm(jobs, desc="converting", unit="source", disable=not progress):
        try:
            if kind == "bag":
                out = convert_bag(src, out_dir, overwrite=overwrite, run=run, **bag_kwargs)
            else:
                out = convert_v5(src, out_dir, overwrite=overwrite, run=run)
            _check_written(out)
            done.append(out)
        except (ConversionError, OSError) as exc:
            errors.append(str(exc))
    if replaced is not None:
        replaced.extend(run.replaced)
    return done, errors
