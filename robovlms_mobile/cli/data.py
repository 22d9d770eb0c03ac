"""`robovlms-mobile data ...`: validate, stats, split, show, convert (each with --help)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from robovlms_mobile.cli.options import add_progress_option, command, command_group, positive_float, positive_int
from robovlms_mobile.task import CHUNK as DEFAULT_CHUNK
from robovlms_mobile.task import MAX_SPEED as DEFAULT_MAX_SPEED
from robovlms_mobile.task import STEP_S
from robovlms_mobile.task import WINDOW as DEFAULT_WINDOW


class Limits(NamedTuple):
    """What the checks need: fewest frames, window + chunk (for the short-episode warning), max speed, glob."""

    min_length: int
    full_length: int
    max_speed: float
    pattern: str


def _limits(args: argparse.Namespace) -> Limits:
    """Limits from flags, else the config (window_size, fwd_pred_next_n, train_dataset keys), else the defaults."""
    from robovlms_mobile.data.format import min_episode_frames

    window, chunk, max_speed, pattern, full = DEFAULT_WINDOW, DEFAULT_CHUNK, DEFAULT_MAX_SPEED, "*.h5", False
    if args.config:
        from robovlms_mobile.config import load_config

        cfg = load_config(args.config)
        section = cfg.get("train_dataset") or {}
        section = section[0] if isinstance(section, list) and section else section
        window, chunk = cfg.get("window_size", window), cfg.get("fwd_pred_next_n", chunk)
        max_speed = section.get("max_speed", max_speed)
        pattern = section.get("episode_pattern") or section.get("pattern", pattern)
        full = bool(section.get("require_full_chunks", False))
    window = args.window if args.window is not None else window
    chunk = args.chunk if args.chunk is not None else chunk
    max_speed = args.max_speed if args.max_speed is not None else max_speed
    full = full or args.require_full_chunks
    return Limits(min_episode_frames(window, chunk, full), window + chunk, float(max_speed), args.pattern or pattern)


def _cmd_validate(args: argparse.Namespace) -> int:
    from robovlms_mobile.data.validate import format_table, report, validate, write_report

    lim = _limits(args)
    if args.json:  # refused before the checks: the report may not land on an input
        from robovlms_mobile.outputs import claim
        from robovlms_mobile.data.validate import collect_files

        claim(args.json, [p for p, _ in collect_files(args.inputs, lim.pattern)], flag="--json")
    checks, names = validate(args.inputs, min_length=lim.min_length, max_speed=lim.max_speed, frames=not args.no_frames,
                             pattern=lim.pattern, progress=not args.no_progress, full_length=lim.full_length)
    print(format_table(checks, names))
    if args.json:
        settings = {"min_length": lim.min_length, "full_length": lim.full_length, "max_speed": lim.max_speed,
                    "pattern": lim.pattern, "frames_checked": not args.no_frames}
        print(f"report: {write_report(args.json, report(checks, names, settings), [c.path for c in checks])}")
    return 1 if any(c.errors for c in checks) else 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from robovlms_mobile.data.stats import write_stats
    from robovlms_mobile.data.validate import collect_files

    paths = [p for p, _ in collect_files(args.inputs, args.pattern or "*.h5")]
    _, summary = write_stats(paths, args.out, progress=not args.no_progress)
    print(summary.read_text())
    print(f"written: {summary} and the PNG plots beside it")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from robovlms_mobile.data.scan import check_files, find_episode_files
    from robovlms_mobile.data.format import scenario_fields
    from robovlms_mobile.data.split_file import make_split, relative_names, write_split_file
    from robovlms_mobile.outputs import claim

    lim = _limits(args)
    root = Path(args.dir)
    paths = find_episode_files(root, lim.pattern)
    claim(args.out, paths)  # before the checks: the split file may not land on an episode
    checks = check_files(paths, min_length=lim.min_length, max_speed=lim.max_speed, progress=not args.no_progress)
    names = relative_names(paths, [root])
    bad = [(n, "; ".join(p.message for p in c.errors)) for n, c in zip(names, checks) if c.errors]
    if bad and not args.skip_invalid:
        lines = "\n".join(f"  {n}: {m}" for n, m in bad)
        print(f"robovlms-mobile data split: error: {len(bad)} invalid episode file(s) (fix them, or --skip-invalid to "
              f"leave them out):\n{lines}", file=sys.stderr)
        return 2
    good = [(n, c.episode) for n, c in zip(names, checks) if c.episode is not None]
    doc = make_split([e for _, e in good], [n for n, _ in good], val=args.val, test=args.test, seed=args.seed, excluded=bad)
    out = write_split_file(args.out, doc, paths)
    by_split = {e["file"]: s for s, entries in doc["splits"].items() for e in entries}
    fields = {n: list(scenario_fields(e.scenario, e.side).items()) for n, e in good}
    sides = Counter((by_split[n], fields[n][0][1]) for n, _ in good)
    second = Counter((by_split[n], "{}={}".format(*fields[n][1])) for n, _ in good)  # boxes (V4) or path (V5)
    dups = sum(any(p.code == "duplicate" for p in c.problems) for c in checks)
    print(f"{len(good)} episodes -> " + ", ".join(f"{s} {c}" for s, c in doc["counts"].items())
          + (f" ({len(bad)} invalid left out)" if bad else "") + (f" ({dups} duplicate(s) counted once)" if dups else ""))
    for split in doc["counts"]:
        print(f"  {split:<5} side " + " ".join(f"{k}={sides[(split, k)]}" for k in sorted({k for _, k in sides}))
              + "  " + " ".join(f"{k}:{second[(split, k)]}" for k in sorted({k for _, k in second})))
    print(f"split file: {out}  (dataset key \"split_file\": \"{out}\")")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from robovlms_mobile.data.show import show_episode

    result = show_episode(args.file, args.out, width=args.width, columns=args.columns, dt=args.dt, max_speed=args.max_speed)
    for key in ("sheet", "gif", "trajectory"):
        print(f"{key}: {result[key]}")
    x, y, heading = result["final_pose"]
    print(f"final pose: x {x:+.2f} m (forward), y {y:+.2f} m (left), heading {heading:+.2f} rad after {result['num_frames']} frames")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from robovlms_mobile.data.convert import convert_any
    from robovlms_mobile.task import check_instruction

    if args.instruction is not None:
        args.instruction = check_instruction(args.instruction, where="--instruction")
    replaced: list[Path] = []
    written, errors = convert_any(args.sources, args.out, camera_topic=args.camera_topic, cmd_topic=args.cmd_topic,
                                  mode=args.frames, fps=args.fps, scenario=args.scenario, instruction=args.instruction,
                                  overwrite=args.overwrite, progress=not args.no_progress, replaced=replaced)
    for path in written:
        print(f"wrote {path}" + (" (replaced the existing file: --overwrite)" if path in replaced else ""))
    for message in errors:
        print(f"robovlms-mobile data convert: error: {message}", file=sys.stderr)
    print(f"{len(written)} V4 file(s) written, {len(errors)} source(s) failed")
    return 1 if errors else 0


def _limit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="experiment config: window_size, fwd_pred_next_n, train_dataset.max_speed/pattern/"
                                    "require_full_chunks")
    p.add_argument("--window", type=positive_int, help=f"window size (default: config, else {DEFAULT_WINDOW})")
    p.add_argument("--chunk", type=positive_int, help=f"action chunk length (default: config, else {DEFAULT_CHUNK})")
    p.add_argument("--max-speed", type=positive_float,
                   help=f"largest allowed |linear velocity| (default: config, else {DEFAULT_MAX_SPEED})")
    p.add_argument("--pattern", help="file name glob inside the folder (default: config, else *.h5)")
    p.add_argument("--require-full-chunks", action="store_true",
                   help="refuse episodes shorter than window + chunk (default: config, else they train with the missing "
                        "future steps masked)")
    add_progress_option(p)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command group to the main CLI."""
    sub = command_group(subparsers, "data", help="episode data toolkit: validate, stats, split, show, convert",
                        description="Check, inspect, split and convert robot episode files (V4/V5 HDF5, ROS 2 bags).")

    p = command(sub, "validate", _cmd_validate, help="check every file; table of problems, JSON report",
                     description="Check every episode file (never stopping at the first bad one). Exit 0 only when no file "
                                 "has an error; warnings (black/constant frames, no event types, episodes shorter "
                                 "than window + chunk, which train with the missing steps masked) are allowed.")
    p.add_argument("inputs", nargs="+", metavar="DIR", help="folders (searched recursively) or files")
    _limit_flags(p)
    p.add_argument("--json", metavar="PATH", help="also write a JSON report")
    p.add_argument("--no-frames", action="store_true", help="skip decoding every frame (black/constant checks)")

    p = command(sub, "stats", _cmd_stats, help="scenario counts, lengths, action classes, per-axis values: PNG + Markdown",
                     description="Summarise a folder of episodes: counts by scenario, length histogram, action classes, "
                                 "per-axis value histograms; writes PNG plots and summary.md.")
    p.add_argument("inputs", nargs="+", metavar="DIR", help="folders or files")
    p.add_argument("--out", default="data-stats", help="output folder (default: %(default)s)")
    p.add_argument("--pattern", help="file name pattern (default: *.h5)")
    add_progress_option(p)

    p = command(sub, "split", _cmd_split, help="write a seeded, scenario-stratified train/val/test split file",
                     description="Write a deterministic episode-level split (JSON: seed, ratios, files and content hashes "
                                 "per split), stratified by scenario; the same episodes give the same file whatever "
                                 "their order. Use it with the dataset key \"split_file\".")
    p.add_argument("dir", help="episode folder")
    p.add_argument("--out", default="split.json", help="split file to write (default: %(default)s)")
    p.add_argument("--val", type=float, default=0.1, help="validation share (default: %(default)s)")
    p.add_argument("--test", type=float, default=0.0, help="test share (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    p.add_argument("--skip-invalid", action="store_true", help="leave invalid files out (listed in the file) instead of refusing")
    _limit_flags(p)

    p = command(sub, "show", _cmd_show, help="contact sheet, animated GIF and trajectory of one episode",
                     description="Draw one episode: a contact-sheet PNG (action arrow, values and event type on each "
                                 "frame), an animated GIF, and the top-down trajectory integrated from the velocities.")
    p.add_argument("file", help="episode file (V4 or V5)")
    p.add_argument("--out", default="show", help="output folder (default: %(default)s)")
    p.add_argument("--width", type=positive_int, default=320, help="frame width in the sheet and GIF (default: %(default)s)")
    p.add_argument("--columns", type=positive_int, default=6, help="contact-sheet columns (default: %(default)s)")
    p.add_argument("--dt", type=positive_float, default=STEP_S, help="seconds per frame for the GIF and the integration (default: %(default)s)")
    p.add_argument("--max-speed", type=positive_float, default=DEFAULT_MAX_SPEED, help="speed of a full-length arrow (default: %(default)s)")

    p = command(sub, "convert", _cmd_convert, help="ROS 2 bags (MCAP) or V5 files -> V4 episode files",
                     description="Convert rosbag2 MCAP bags (a camera topic + /cmd_vel) or V5 HDF5 files to V4 episode "
                                 "files. Bags: one frame per velocity change, as the original collector recorded "
                                 "(--frames change), or a fixed rate (--frames rate --fps F).")
    p.add_argument("sources", nargs="+", metavar="SRC", help=".mcap files, rosbag2 folders, V5 .h5 files or folders of them")
    p.add_argument("--out", required=True, help="output folder for the V4 files")
    p.add_argument("--camera-topic", default="/camera/image_raw", help="sensor_msgs Image or CompressedImage topic (default: %(default)s)")
    p.add_argument("--cmd-topic", default="/cmd_vel", help="geometry_msgs Twist topic (default: %(default)s)")
    p.add_argument("--frames", choices=("change", "rate"), default="change", help="frame selection (default: %(default)s)")
    p.add_argument("--fps", type=positive_float, help="frames per second for --frames rate")
    p.add_argument("--scenario", help="scenario tag for the file name, e.g. 1box_hori_left_core_medium")
    p.add_argument("--instruction", help="language instruction to store (default: from --scenario)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (each one replaced is named)")
    add_progress_option(p)

