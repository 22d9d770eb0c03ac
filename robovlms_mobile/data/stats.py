"""`robovlms-mobile data stats`: what a folder of episodes holds — scenarios, lengths, action classes, per-axis values."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from robovlms_mobile.data.fields import read_actions, read_event_types
from robovlms_mobile.data.format import V4_FIELDS, V5_FIELDS, scenario_fields
from robovlms_mobile.data.scan import check_files
from robovlms_mobile.outputs import check_folder, claim, write_text, writing
from robovlms_mobile.task import RAW_ACTION_COLUMNS as AXES

ACTION_CLASSES = ("forward", "backward", "left", "right", "forward_left", "forward_right", "backward_left",
                  "backward_right", "rotation", "stop")
SCENARIO_FIELDS = tuple(dict.fromkeys(("boxes", *V4_FIELDS, *V5_FIELDS)))  # V4 fields, then V5-only ones
EPS = 1e-6


def action_class(action: np.ndarray) -> str:
    """Class of one [linear_x, linear_y, angular_z] step; a translation with a turn counts as the translation."""
    x, y, z = (0 if abs(v) < EPS else (1 if v > 0 else -1) for v in action[:3])
    if x == 0 and y == 0:
        return "stop" if z == 0 else "rotation"
    fwd = {1: "forward", -1: "backward", 0: ""}[x]
    side = {1: "left", -1: "right", 0: ""}[y]
    return "_".join(p for p in (fwd, side) if p)


def collect(paths: Sequence[Path], *, progress: bool = True) -> dict[str, Any]:
    """Counts over every usable episode (length and speed limits not applied); files with other errors are listed."""
    checks = check_files(paths, min_length=1, max_speed=float("inf"), progress=progress)
    scen = {f: Counter() for f in SCENARIO_FIELDS}
    tags, lengths, classes, generations, events = Counter(), Counter(), Counter(), Counter(), Counter()
    values = {a: [] for a in AXES}
    skipped = []
    for check in checks:
        if check.episode is None:
            skipped.append((str(check.path), "; ".join(p.message for p in check.errors)))
            continue
        ep = check.episode
        with h5py.File(ep.path, "r") as f:
            actions, ev = read_actions(f), read_event_types(f)
        generations[ep.generation] += 1
        tags[ep.scenario] += 1
        fields = scenario_fields(ep.scenario, ep.side)
        for name, value in fields.items():
            scen[name][value] += 1
        lengths[ep.num_frames] += 1
        classes.update(action_class(a) for a in actions)
        events.update(ev or [])
        for i, axis in enumerate(AXES):
            values[axis].append(actions[:, i])
    values = {a: np.concatenate(v) if v else np.zeros(0, np.float32) for a, v in values.items()}
    return {"episodes": sum(generations.values()), "generations": dict(generations), "scenario_tags": dict(tags),
            "scenario": {f: dict(c) for f, c in scen.items()}, "lengths": dict(sorted(lengths.items())),
            "action_classes": {c: classes.get(c, 0) for c in ACTION_CLASSES}, "events": dict(events),
            "axis_values": values, "skipped": skipped}


def _table(title: str, counts: dict, total: int | None = None) -> list[str]:
    total = total if total is not None else sum(counts.values())
    lines = [f"| {title} | count | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v} | {100 * v / total:.1f}% |" if total else f"| {k} | {v} | - |" for k, v in counts.items()]
    return lines + [""]


def markdown(stats: dict[str, Any], images: Sequence[str] = ()) -> str:
    """The Markdown summary."""
    out = ["# Episode statistics", "", f"{stats['episodes']} episode(s): "
           + ", ".join(f"{n} {g.upper()}" for g, n in sorted(stats["generations"].items())), ""]
    if stats["skipped"]:
        out += [f"{len(stats['skipped'])} file(s) left out because of errors (length and speed limits are not applied here):", ""]
        out += [f"- `{p}`: {m}" for p, m in stats["skipped"]] + [""]
    out += ["## Scenarios", ""]
    for field in SCENARIO_FIELDS:
        if stats["scenario"][field]:
            out += _table(field, dict(sorted(stats["scenario"][field].items())))
    out += ["## Lengths (frames)", ""] + _table("frames", {str(k): v for k, v in stats["lengths"].items()})
    n_steps = sum(stats["action_classes"].values())
    out += ["## Action classes (steps)", ""] + _table("class", stats["action_classes"], n_steps)
    if stats["events"]:
        out += ["## Event types (V4 steps)", ""] + _table("event", dict(sorted(stats["events"].items())))
    out += ["## Per-axis values (steps)", ""]
    for axis, v in stats["axis_values"].items():
        uniq, counts = np.unique(np.round(v, 3), return_counts=True)
        shown = dict(zip((f"{u:+.3f}" for u in uniq), (int(c) for c in counts)))
        if len(shown) > 12:  # continuous values: summarise instead
            shown = {"min": f"{v.min():+.3f}", "mean": f"{v.mean():+.3f}", "max": f"{v.max():+.3f}"}
            out += [f"| {axis} | value |", "|---|---:|"] + [f"| {k} | {x} |" for k, x in shown.items()] + [""]
        else:
            out += _table(axis, shown)
    if images:
        out += ["## Plots", ""] + [f"![{Path(i).stem}]({Path(i).name})" for i in images] + [""]
    return "\n".join(out)


def plot(stats: dict[str, Any], out_dir: Path, inputs: Sequence[Path] = ()) -> list[Path]:
    """scenarios.png, lengths.png, action_classes.png, axes.png (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def bars(ax, counts: dict, title: str) -> None:
        ax.bar([str(k) for k in counts], list(counts.values()), color="#4C72B0")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)

    fields = [f for f in SCENARIO_FIELDS if stats["scenario"][f]] or ["side"]
    fig, axes = plt.subplots(1, len(fields), figsize=(3.2 * len(fields), 3.2), squeeze=False)
    for ax, field in zip(axes[0], fields):
        bars(ax, dict(sorted(stats["scenario"][field].items())), field)
    written.append(_save(fig, out_dir / "scenarios.png", inputs))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars(ax, stats["lengths"], "episode length (frames)")
    written.append(_save(fig, out_dir / "lengths.png", inputs))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars(ax, stats["action_classes"], "action classes (steps)")
    written.append(_save(fig, out_dir / "action_classes.png", inputs))
    fig, axes = plt.subplots(1, len(AXES), figsize=(10, 3.2))
    for ax, (axis, v) in zip(axes, stats["axis_values"].items()):
        lim = max(float(np.abs(v).max(initial=0.0)), 1e-3) * 1.1
        ax.hist(v, bins=np.linspace(-lim, lim, 24), color="#55A868")
        ax.set_title(axis)
    written.append(_save(fig, out_dir / "axes.png", inputs))
    return written


def _save(fig, path: Path, inputs: Sequence[Path] = ()) -> Path:
    fig.tight_layout()
    with writing(path, inputs) as path:
        fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write_stats(paths: Sequence[Path], out_dir: str | Path, *, progress: bool = True) -> tuple[dict[str, Any], Path]:
    """Collect, plot and write `summary.md` into out_dir; returns (stats, summary path). No file lands on an input."""
    out_dir = check_folder(out_dir, paths)
    for name in ("scenarios.png", "lengths.png", "action_classes.png", "axes.png", "summary.md"):  # before the work
        claim(out_dir / name, paths)
    stats = collect(paths, progress=progress)
    images = plot(stats, out_dir, paths)
    summary = write_text(out_dir / "summary.md", markdown(stats, [str(i) for i in images]), paths)
    return stats, summary
