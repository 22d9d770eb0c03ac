"""Split files: a seeded, scenario-stratified, episode-level train/val/test split written once as JSON.

The file records the seed, the ratios and, per split, each episode's path (relative to the data
folder), scenario and content hash. The same episodes give a byte-identical file whatever order
they were listed or created in. A dataset with `split_file` reads its split from it, and refuses
files that are missing or whose content changed since the split was made.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robovlms_mobile.errors import ConfigError
from robovlms_mobile.data.episode import Episode
from robovlms_mobile.data.format import V4_FIELDS, scenario_fields
from robovlms_mobile.data.split import assign_splits
from robovlms_mobile.errors import DuplicateKeyError, clip, unique_keys
from robovlms_mobile.outputs import write_text

FORMAT = "robovlms-mobile-split/1"
SPLIT_NAMES = ("train", "val", "test")
STRATA = V4_FIELDS  # most important first; V5 episodes: side, path, pattern, distance, end_pos
log = logging.getLogger("robovlms_mobile.data")


def stratum_of(episode: Episode) -> tuple[str, ...]:
    """The scenario's strata, side first: V4 (side, boxes, distance, layout, variant) or V5 (side, path, pattern,
    distance, end_pos); 'unknown' where the file says nothing."""
    return tuple(scenario_fields(episode.scenario, episode.side).values())


def relative_names(paths: Sequence[Path], roots: Sequence[Path]) -> list[str]:
    """Each path relative to the first root containing it (posix); raises if two files get the same name."""
    names = []
    for path in paths:
        for root in roots:
            try:
                names.append(Path(path).resolve().relative_to(Path(root).resolve()).as_posix())
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"{path} is under none of {[str(r) for r in roots]}")
    clashes = sorted(n for n, c in Counter(names).items() if c > 1)
    if clashes:
        raise ValueError(f"episode file names must be unique across the data folders, repeated: {clashes[:5]}")
    return names


def make_split(episodes: Sequence[Episode], names: Sequence[str], *, val: float, test: float = 0.0, seed: int = 0,
               excluded: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The split document for these episodes (named by `names`); `excluded` lists (name, problem) left out."""
    ratios = {"train": round(1.0 - val - test, 6), "val": float(val), "test": float(test)}
    if not (0.0 <= val < 1.0 and 0.0 <= test < 1.0 and val + test < 1.0):
        raise ValueError(f"ratios val={val}, test={test}: each must be in [0, 1) and val + test < 1")
    hashes = [e.content_hash for e in episodes]
    if not all(hashes):
        raise ValueError("every episode needs a content hash (run the checks first)")
    # instruction variants (one content hash) are one item: split together, never across train/validation
    first: dict[str, int] = {}
    for i in sorted(range(len(episodes)), key=lambda i: names[i]):
        first.setdefault(hashes[i], i)
    keys = sorted(first)
    by_key = dict(zip(keys, assign_splits(keys, [stratum_of(episodes[first[k]]) for k in keys], ratios, seed)))
    assigned = [by_key[h] for h in hashes]
    splits: dict[str, list[dict[str, str]]] = {s: [] for s in SPLIT_NAMES}
    for name, episode, split in sorted(zip(names, episodes, assigned), key=lambda t: t[0]):
        splits[split].append({"file": name, "scenario": episode.scenario, "content_hash": episode.content_hash})
    return {
        "format": FORMAT,
        "seed": seed,
        "ratios": ratios,
        "stratified_by": list(STRATA),
        "counts": {s: len(v) for s, v in splits.items()},
        "splits": splits,
        "excluded": [{"file": n, "problem": p} for n, p in sorted(excluded)],
    }


def write_split_file(path: str | Path, doc: dict[str, Any], inputs: Sequence[Path] = ()) -> Path:
    """Write the document as stable, indented JSON (never onto one of `inputs`, never over a file the tool did not write)."""
    return write_text(path, json.dumps(doc, indent=2) + "\n", inputs)


def read_split_file(path: str | Path) -> dict[str, Any]:
    """Load and check a split file; errors (ConfigError) name the file and the field."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(), object_pairs_hook=unique_keys)
    except DuplicateKeyError as exc:
        raise ConfigError(f"split_file {path}: key {clip(exc.args[0])} appears twice in one object; expected each key once") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"split_file {str(path)!r} does not exist (write one with `robovlms-mobile data split`)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"split_file {path}: invalid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else doc
        raise ConfigError(f"split_file {path}: field 'format' must be {FORMAT!r}, got {got!r}")
    splits = doc.get("splits")
    if not isinstance(splits, dict) or set(splits) != set(SPLIT_NAMES):
        raise ConfigError(f"split_file {path}: field 'splits' must map each of {list(SPLIT_NAMES)} to a list")
    for split, entries in splits.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) and {"file", "content_hash"} <= set(e) for e in entries):
            raise ConfigError(f"split_file {path}: 'splits.{split}' must be a list of {{file, content_hash, ...}}")
    return doc


def select_split(doc: dict[str, Any], split: str, episodes: Sequence[Episode], names: Sequence[str],
                 on_disk: set[str], *, source: str | Path) -> list[Episode]:
    """The episodes of one split ('all': every split), in file-name order.

    `episodes`/`names` are the valid files found, `on_disk` every file name found (valid or not).
    A listed file that is not on disk, or whose content hash changed, is an error naming it; a
    listed file that is on disk but invalid was already reported (and skipped) by the scan.
    """
    wanted = [e for s in (SPLIT_NAMES if split == "all" else (split,)) for e in doc["splits"][s]]
    by_name = dict(zip(names, episodes))
    missing = [w["file"] for w in wanted if w["file"] not in on_disk]
    if missing:
        raise FileNotFoundError(f"split_file {source}: {len(missing)} file(s) of split '{split}' not found: "
                                + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
    changed = [w["file"] for w in wanted if w["file"] in by_name and by_name[w["file"]].content_hash != w["content_hash"]]
    if changed:
        raise ConfigError(f"split_file {source}: {len(changed)} file(s) changed since the split was made (content hash "
                         f"differs): {', '.join(changed[:20])}; re-run `robovlms-mobile data split`")
    listed = {e["file"] for entries in doc["splits"].values() for e in entries}
    unlisted = sorted(set(names) - listed)
    if unlisted:
        log.warning("%d episode file(s) are in no split of %s (added after the split?): %s", len(unlisted), source,
                    ", ".join(unlisted[:10]))
    return [by_name[w["file"]] for w in sorted(wanted, key=lambda w: w["file"]) if w["file"] in by_name]
