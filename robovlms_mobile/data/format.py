"""The episode file format (spec §4, §7): keys, limits, the scenario vocabulary and what file names say.

Everything that reads or writes episode files takes these facts from here; the procedural
generator (`synthetic`) and the writers (`writers`) only use them.

Scenarios come in two vocabularies:
- V4 (obstacle course): `<1box|2box>[_<hori|vert>]_<left|right>[_<core|variant>][_<close|medium|far>]`,
  in the file name (the latest V4 collector writes every field, the intermediate one no pattern or
  distance);
- V5 (target reaching): `<target_<left|center|right>_<left|straight|right>_path | free_<side>>
  [__<diversity>]__<pattern>__<distance>_<end_pos>`, in the file name and in the attributes
  `scenario, pattern, distance, end_pos` (the add_free copies keep only the name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

V4_IMAGES = "images"
V5_IMAGES = "observations/images"
EVENT_TYPES = ("episode_start", "start_action", "stop_action")

MIN_EPISODE_FRAMES = 2  # the V4 collector saves any episode of two frames or more
MAX_EPISODE_FRAMES = 10_000  # far above any collector's episode (18 key presses; 10 Hz V5 runs of minutes)
MAX_FRAME_SIDE = 8192  # pixels, per side of a stored frame
MAX_JPEG_BYTES = 32 * 2**20  # one stored JPEG frame
MAX_COMPRESSION_RATIO = 1100  # gzip (deflate) cannot compress better than ~1032:1; more means unwritten data
# Each chunk costs a B-tree lookup and a filter call however small it is: one chunk per step (a
# collector appending rows) is always fine; beyond that a dataset's chunks must hold this much on average.
MIN_MEAN_CHUNK_BYTES = 1024
SPARE_CHUNKS = 64  # chunks every dataset may have on top of those



def min_episode_frames(window_size: int, chunk: int, require_full_chunks: bool = False) -> int:
    """Fewest frames an episode may have: window + chunk with `require_full_chunks`, else MIN_EPISODE_FRAMES."""
    return int(window_size) + int(chunk) if require_full_chunks else MIN_EPISODE_FRAMES


# V4 vocabulary (the obstacle-course collector)
N_BOXES, LAYOUTS, SIDES = (1, 2), ("hori", "vert"), ("left", "right")
VARIANTS, DISTANCES = ("core", "variant"), ("close", "medium", "far")
V4_ATTRS = ("episode_name", "num_frames", "total_duration", "action_chunk_size")
# V5 vocabulary (the gradio target-reaching collector)
V5_TARGETS, V5_PATHS = ("left", "center", "right"), ("left", "straight", "right")
V5_ATTRS = ("scenario", "pattern", "distance", "end_pos")

# the one V4 scenario pattern: searched in file names, matched in full against tags
NAME_RE = re.compile(
    r"(?<![0-9a-z])(?P<boxes>[12]box)(?:_(?P<layout>hori|vert))?_(?P<side>left|right)"
    r"(?:_(?P<variant>core|variant))?(?:_(?P<distance>close|medium|far))?(?![0-9a-z])"
)
_T, _P = "|".join(V5_TARGETS), "|".join(V5_PATHS)
V5_TAG_RE = re.compile(
    rf"(?P<scenario>target_(?P<target>{_T})_(?P<path>{_P})_path|free_(?P<free>{_T}))"
    rf"(?:__(?P<diversity>[0-9a-z_]+?))?__(?P<pattern>[0-9a-z-]+)__(?P<distance>[0-9a-z-]+)_(?P<end_pos>{_T})"
)
V4_FIELDS = ("side", "boxes", "distance", "layout", "variant")  # strata, most important first
V5_FIELDS = ("side", "path", "pattern", "distance", "end_pos")


@dataclass(frozen=True)
class Scenario:
    """One V4 obstacle scenario (the parts of a V4 file name after the timestamp)."""

    n_boxes: int = 1
    layout: str = "hori"
    side: str = "left"
    variant: str = "core"
    distance: str = "medium"

    def __post_init__(self) -> None:
        for name, allowed in (("n_boxes", N_BOXES), ("layout", LAYOUTS), ("side", SIDES),
                              ("variant", VARIANTS), ("distance", DISTANCES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Scenario.{name}={getattr(self, name)!r} not in {allowed}")

    @property
    def tag(self) -> str:
        """Name part such as ``1box_hori_left_core_medium``."""
        return f"{self.n_boxes}box_{self.layout}_{self.side}_{self.variant}_{self.distance}"

    @classmethod
    def from_name(cls, name: str | Path) -> Scenario:
        """Parse a full V4 file name ``episode_<stamp>_<tag>.h5`` (every field present)."""
        stem = Path(name).name
        m = re.fullmatch(r"episode_\d{8}_\d{6}_(?P<tag>.+)\.h5", stem)
        tag = m and NAME_RE.fullmatch(m["tag"])
        if not tag or None in (tag["layout"], tag["variant"], tag["distance"]):
            raise ValueError(f"not a V4 episode file name: {stem!r}")
        return cls(int(tag["boxes"][0]), tag["layout"], tag["side"], tag["variant"], tag["distance"])


# every V4 scenario, side innermost: consecutive entries are left/right mirror pairs
V4_SCENARIOS = tuple(Scenario(n, lay, side, var, dist) for var in VARIANTS for lay in LAYOUTS
                     for n in N_BOXES for dist in DISTANCES for side in SIDES)


def instruction_for(n_boxes: int, side: str) -> str:
    """The instruction text for a V4 scenario, as the collector's file names describe it."""
    if n_boxes not in N_BOXES or side not in SIDES:
        raise ValueError(f"no instruction for n_boxes={n_boxes!r}, side={side!r}")
    obstacle = "box" if n_boxes == 1 else "boxes"
    return f"go around the {obstacle} on the {side} and stop in front of the bottle"


def instruction_from_name(path: Path | str) -> str | None:
    """Instruction derived from a V4 file name (`..._1box_hori_left_...`, `..._2box_vert_right.h5`), or None."""
    match = NAME_RE.search(Path(path).stem)
    return instruction_for(int(match["boxes"][0]), match["side"]) if match else None


def text(value: Any) -> str:
    """An attribute or dataset value as str (bytes decoded as UTF-8)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def scenario_of(path: Path | str, attrs: Any = None) -> str:
    """Scenario tag from the file name (V4 or V5), else the V5 attrs, else 'unknown'."""
    stem = Path(path).stem
    for regex in (NAME_RE, V5_TAG_RE):
        match = regex.search(stem)
        if match:
            return match.group(0)
    if attrs is not None and "scenario" in attrs:
        parts = {k: text(attrs.get(k, "")).strip() for k in V5_ATTRS}
        v5 = f"{parts['scenario']}__{parts['pattern'] or 'unknown'}__{parts['distance'] or 'unknown'}_{parts['end_pos']}"
        match = V5_TAG_RE.fullmatch(v5) or NAME_RE.fullmatch(parts["scenario"])
        if match:
            return match.group(0)
        if V5_TAG_RE.fullmatch(f"{parts['scenario']}__p__d_center"):  # a V5 scenario id with odd other attrs
            return parts["scenario"]
    return "unknown"


def scenario_fields(tag: str, side: str = "unknown") -> dict[str, str]:
    """The strata of a scenario tag: V4 (side, boxes, distance, layout, variant) or V5 (side, path, ...)."""
    v4 = NAME_RE.fullmatch(tag)
    if v4:
        return {k: v4[k] or "unknown" for k in V4_FIELDS}
    v5 = V5_TAG_RE.fullmatch(tag) or re.fullmatch(V5_TAG_RE.pattern.split("(?:__")[0], tag)
    if v5:
        fields = v5.groupdict()
        return {"side": fields.get("target") or fields.get("free") or side, "path": fields.get("path") or "free",
                **{k: fields.get(k) or "unknown" for k in V5_FIELDS[2:]}}
    return {k: side if k == "side" else "unknown" for k in V4_FIELDS}


def side_of(tag: str) -> str | None:
    """left / center / right from a scenario tag, or None."""
    side = scenario_fields(tag)["side"]
    return None if side == "unknown" else side
