"""Check many episode files: per-file checks (`check_episode`) plus duplicates across files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from robovlms_mobile.data.episode import EpisodeCheck, Problem, check_episode


def check_files(paths: Sequence[Path], *, min_length: int, max_speed: float, frames: bool = False,
                progress: bool = False) -> list[EpisodeCheck]:
    """One EpisodeCheck per path (same order); a later copy of an earlier file's content is an error."""
    checks = [check_episode(p, min_length=min_length, max_speed=max_speed, frames=frames)
              for p in tqdm(paths, desc="checking episodes", unit="file", disable=not progress)]
    mark_duplicates(checks)
    return checks


def mark_duplicates(checks: Sequence[EpisodeCheck]) -> None:
    """Among files without other errors, every file whose content hash an earlier path (sorted) has is an error."""
    first: dict[str, Path] = {}
    for check in sorted(checks, key=lambda c: str(c.path)):
        if check.errors or not check.content_hash:
            continue
        original = first.setdefault(check.content_hash, check.path)
        if original != check.path:
            check.problems.append(Problem("error", "duplicate", f"duplicate of {original} (same actions and image bytes, "
                                                                f"content hash {check.content_hash[:12]})"))
            check.episode = None
