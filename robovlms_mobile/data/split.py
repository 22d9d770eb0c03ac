"""Seeded, episode-level train/val split, stratified by scenario side (left/right)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

SPLITS = ("train", "val", "all")


def split_episodes(names: Sequence[str], sides: Sequence[str], *, val_ratio: float, seed: int) -> dict[str, list[int]]:
    """Indices for 'train' / 'val' / 'all'. Depends only on (names, sides, ratio, seed), not on order.

    Within each side the episodes are ordered by a seeded hash of their file name, and the
    first round(val_ratio * n) (at least one when n >= 2) go to val, so no episode is in both
    and left/right are balanced across the split.
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    groups: dict[str, list[int]] = defaultdict(list)
    for index, side in enumerate(sides):
        groups[side].append(index)
    val: list[int] = []
    for side in sorted(groups):
        members = sorted(groups[side], key=lambda i: _rank(names[i], seed))
        n_val = round(val_ratio * len(members))
        if val_ratio > 0 and n_val == 0 and len(members) >= 2:
            n_val = 1
        val.extend(members[:n_val])
    val_set = set(val)
    return {
        "train": [i for i in range(len(names)) if i not in val_set],
        "val": sorted(val_set),
        "all": list(range(len(names))),
    }


def _rank(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()
