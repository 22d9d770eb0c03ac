"""`robovlms-mobile data validate`: check every file, never stopping at the first bad one; table + JSON report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robovlms_mobile.data.episode import EpisodeCheck
from robovlms_mobile.data.scan import check_files, find_episode_files
from robovlms_mobile.outputs import write_text


def collect_files(inputs: Sequence[str | Path], pattern: str = "*.h5") -> list[tuple[Path, str]]:
    """(path, display name) for every episode file under the given folders / of the given files."""
    out = []
    for item in inputs:
        item = Path(item)
        if item.is_file():
            out.append((item, str(item)))
        elif item.is_dir():
            out.extend((p, str(item / p.relative_to(item))) for p in find_episode_files(item, pattern))
        else:
            raise FileNotFoundError(f"{str(item)!r} is neither a file nor a folder")
    seen, unique = set(), []
    for path, shown in out:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append((path, shown))
    return unique


def validate(inputs: Sequence[str | Path], *, min_length: int, max_speed: float, frames: bool = True,
             pattern: str = "*.h5", progress: bool = True, full_length: int | None = None) -> tuple[list[EpisodeCheck], list[str]]:
    """Checks of every file (duplicates across all inputs) and their display names."""
    files = collect_files(inputs, pattern)
    checks = check_files([p for p, _ in files], min_length=min_length, max_speed=max_speed, frames=frames, progress=progress,
                         full_length=full_length)
    return checks, [shown for _, shown in files]


def report(checks: Sequence[EpisodeCheck], names: Sequence[str], settings: dict[str, Any]) -> dict[str, Any]:
    """The JSON report: settings, a summary and one entry per file."""
    files = [{
        "file": name, "path": str(c.path.resolve()), "generation": c.generation, "num_frames": c.num_frames,
        "content_hash": c.content_hash, "status": "error" if c.errors else "warning" if c.warnings else "ok",
        "problems": [{"severity": p.severity, "code": p.code, "message": p.message} for p in c.problems],
    } for c, name in zip(checks, names)]
    status = [f["status"] for f in files]
    return {"settings": settings,
            "summary": {"files": len(files), "ok": status.count("ok"), "warnings_only": status.count("warning"),
                        "errors": status.count("error")},
            "files": files}


def format_table(checks: Sequence[EpisodeCheck], names: Sequence[str]) -> str:
    """One row per problem (file, generation, severity, problem), then a summary line."""
    rows = [(name, (c.generation or "?").upper(), p.severity, p.message)
            for c, name in zip(checks, names) for p in sorted(c.problems, key=lambda p: p.severity != "error")]
    width = max([len("FILE")] + [len(r[0]) for r in rows])
    lines = [f"{'FILE':<{width}}  GEN  SEVERITY  PROBLEM"] + [f"{f:<{width}}  {g:<3}  {s:<8}  {m}" for f, g, s, m in rows]
    n_err = sum(bool(c.errors) for c in checks)
    n_warn = sum(bool(c.warnings) and not c.errors for c in checks)
    lines.append(f"{len(checks)} file(s): {len(checks) - n_err - n_warn} ok, {n_warn} with warnings only, {n_err} with errors")
    return "\n".join(lines if rows else lines[-1:])


def write_report(path: str | Path, doc: dict[str, Any], inputs: Sequence[Path] = ()) -> Path:
    """Write the JSON report (never onto one of `inputs`, never over a file the tool did not write)."""
    return write_text(path, json.dumps(doc, indent=2) + "\n", inputs, flag="--json")
