"""Find and check many episode files: a confined glob, per-file checks (`check_episode`), duplicates across files.

Two files with the same frames and actions (content hash) are a *variant* when their instructions differ
(the lab adds instructions to a collector's copy): both are kept, and splits keep them together. With
the instruction the same too they are a *duplicate*: a warning, and the later path is counted once, left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from robovlms_mobile.data.episode import Episode, EpisodeCheck, Problem, check_episode


def check_pattern(pattern: str, flag: str = "pattern") -> str:
    """A file-name glob that stays inside the data folder: relative, no '..' part; returns it."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError(f"{flag}: expected a non-empty file-name glob such as '*.h5', got {pattern!r}")
    parts = PurePosixPath(pattern.replace("\\", "/")).parts
    if pattern.startswith(("/", "~")) or ".." in parts or "\x00" in pattern:
        raise ValueError(f"{flag} {pattern!r}: the glob must stay inside the data folder (relative, no '..' part)")
    return pattern


def find_episode_files(data_dir: str | Path | Sequence[str | Path], pattern: str = "*.h5") -> list[Path]:
    """All episode files under one or more directories (recursive glob, confined to each directory), sorted."""
    check_pattern(pattern)
    dirs = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
    files: list[Path] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"data_dir {str(d)!r} is not a directory")
        root = d.absolute()
        for p in d.rglob(pattern):
            if p.is_file() and p.absolute().is_relative_to(root):
                files.append(p)
    if not files:
        raise FileNotFoundError(f"no episode files matching {pattern!r} under {[str(d) for d in dirs]}")
    return sorted(set(files))


def check_files(paths: Sequence[Path], *, min_length: int, max_speed: float, frames: bool = False,
                progress: bool = False, full_length: int | None = None) -> list[EpisodeCheck]:
    """One EpisodeCheck per path (same order); a later copy of an earlier file (instruction included) is left out."""
    checks = [check_episode(p, min_length=min_length, max_speed=max_speed, frames=frames, full_length=full_length)
              for p in tqdm(paths, desc="checking episodes", unit="file", disable=not progress)]
    mark_duplicates(checks)
    return checks


def mark_duplicates(checks: Sequence[EpisodeCheck]) -> None:
    """Among usable files, one whose content hash and instruction an earlier path (sorted) has gets a `duplicate`
    warning and no episode (counted once); the same content with another instruction is a variant, kept."""
    first: dict[tuple[str, str], Path] = {}
    for check in sorted(checks, key=lambda c: str(c.path)):
        if check.errors or not check.content_hash or check.episode is None:
            continue
        original = first.setdefault((check.content_hash, check.episode.instruction), check.path)
        if original != check.path:
            check.problems.append(Problem("warning", "duplicate", f"duplicate of {original} (same frames, actions and "
                                                                  f"instruction, content hash {check.content_hash[:12]}): "
                                                                  "counted once"))
            check.episode = None


def group_keys(episodes: Sequence[Episode]) -> list[str]:
    """A key per episode shared by its instruction variants (same content hash), so splits keep them together."""
    return [e.content_hash or f"path:{e.path}" for e in episodes]
