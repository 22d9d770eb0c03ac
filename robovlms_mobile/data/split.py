"""Seeded, episode-level train/val split, stratified by scenario side (left/right)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

SPLITS = ("train", "val", "all")


def split_episodes(names: Sequence[str], sides: Sequence[str], *, val_ratio: float, seed: int,
                   groups: Sequence[str] | None = None) -> dict[str, list[int]]:
    """Indices for 'train' / 'val' / 'all'. Depends only on (names, sides, groups, ratio, seed), not on order.

    Episodes sharing a `groups` key (instruction variants of one recording) move together, named and
    sided by their first name. Within each side the groups are ordered by a seeded hash of that
    name, and the first round(val_ratio * n) (at least one when n >= 2) go to val, so no recording
    is in both and left/right are balanced across the split.
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    keys = list(groups) if groups is not None else list(names)
    members_of: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        members_of[key].append(index)
    first = {key: min(members, key=lambda i: names[i]) for key, members in members_of.items()}
    by_side: dict[str, list[str]] = defaultdict(list)
    for key, i in first.items():
        by_side[sides[i]].append(key)
    val: list[int] = []
    for side in sorted(by_side):
        ordered = sorted(by_side[side], key=lambda k: _rank(names[first[k]], seed))
        n_val = round(val_ratio * len(ordered))
        if val_ratio > 0 and n_val == 0 and len(ordered) >= 2:
            n_val = 1
        val.extend(i for key in ordered[:n_val] for i in members_of[key])
    val_set = set(val)
    return {
        "train": [i for i in range(len(names)) if i not in val_set],
        "val": sorted(val_set),
        "all": list(range(len(names))),
    }


def _rank(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def assign_splits(keys: Sequence[str], strata: Sequence[tuple[str, ...]], ratios: dict[str, float], seed: int) -> list[str]:
    """A split name per item: seeded, stratified, and independent of the input order.

    Items are ordered so that each stratum level forms contiguous blocks (side, then box count
    within it, ...), the blocks and the items inside the last level in a seeded order. Walking
    that order, each non-train split accumulates its ratio per item (from 0.5) and takes the
    item whenever its total reaches 1: every block gets its share to within one item, and each
    split gets round(ratio * n) items (one fewer at most when two splits come due together).
    """
    if len(keys) != len(strata):
        raise ValueError(f"{len(keys)} keys but {len(strata)} strata")
    if len(set(keys)) != len(keys):
        raise ValueError("split keys must be unique")
    others = sorted(s for s in ratios if s != "train")
    if any(ratios[s] < 0 for s in ratios) or sum(ratios[s] for s in others) >= 1.0:
        raise ValueError(f"split ratios must be >= 0 and leave some train data, got {ratios}")

    def order(i: int) -> tuple[str, ...]:
        levels = strata[i]
        return (*(_rank("/".join(levels[: d + 1]), seed) for d in range(len(levels))), _rank(keys[i], seed))

    acc = {s: 0.5 for s in others}
    out = ["train"] * len(keys)
    for i in sorted(range(len(keys)), key=order):
        for s in others:
            acc[s] += ratios[s]
        ready = [s for s in others if acc[s] >= 1.0]
        if ready:
            best = max(ready, key=lambda s: (acc[s], s))
            acc[best] -= 1.0
            out[i] = best
    return out
