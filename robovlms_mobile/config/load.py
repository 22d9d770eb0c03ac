"""Reading config files: upstream's JSON with `parent` inheritance, read as untrusted input.

A config names other files (`parent`), so every file is opened without blocking, must be a
regular file within a size bound, and the `parent` chain must not loop. Every problem is one
`ConfigError` line naming the file (and the key, where there is one).
"""

from __future__ import annotations

import copy
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from robovlms_mobile.errors import ConfigError, DuplicateKeyError, clip, unique_keys  # ConfigError re-exported: one class object

MAX_CONFIG_BYTES = 1 << 20  # a config is a few KB; anything over 1 MiB is not one
MAX_PARENT_DEPTH = 16
MAX_NESTING = 32  # objects and lists inside one another; upstream's configs nest 3 levels deep


def deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `update` into `base` (upstream main.py semantics)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes: a regular file (no FIFO, device or folder), at most MAX_CONFIG_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r}: cannot open ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"config file {str(path)!r} is not a regular file (a FIFO, device or folder); expected a JSON file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {str(path)!r} is {info.st_size} bytes; expected a JSON file of at most {MAX_CONFIG_BYTES} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {str(path)!r} is over {MAX_CONFIG_BYTES} bytes; expected a JSON file")
    return data


def nesting_depth(value: Any) -> int:
    """How deeply objects and lists nest in a parsed JSON value (iterative: any depth json accepted)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_config(data: bytes, path: Path) -> dict[str, Any]:
    """A JSON object from the bytes; duplicate keys, deep nesting and non-finite numbers are refused with their key."""
    try:
        raw = json.loads(data.decode("utf-8"), object_pairs_hook=unique_keys)
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: key {clip(exc.args[0])} appears twice in one object (the first would be ignored "
                          "silently); expected each key once") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected a JSON file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ConfigError(f"{path}: JSON nested too deeply; expected a config object") from None
    except ValueError as exc:  # e.g. an integer with thousands of digits
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level is a JSON {type(raw).__name__}; expected an object")
    if nesting_depth(raw) > MAX_NESTING:
        raise ConfigError(f"{path}: objects and lists nested more than {MAX_NESTING} levels deep; expected a config object")
    check_finite(raw, str(path))
    return raw


def check_finite(value: Any, source: str, key: str = "") -> None:
    """Refuse NaN and +-Infinity anywhere in a config (JSON extensions Python accepts)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: key '{key}' = {value}: expected a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, source, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_finite(v, source, f"{key}[{i}]")


def _parent_path(parent: str, child: Path) -> Path:
    """Upstream resolves `parent` from the cwd; beside the child file is the fallback."""
    first = Path(parent)
    if not first.exists() and not first.is_absolute() and (child.parent / parent).exists():
        return child.parent / parent
    return first


def load_config(path: str | Path, _chain: tuple[Path, ...] = (), _referrer: Path | None = None) -> dict[str, Any]:
    """Load a JSON config, merging its `parent` chain (resolved from the cwd, as upstream does, else beside the file)."""
    path = Path(path)
    try:
        raw = parse_config(read_config_bytes(path), path)
    except ConfigError as exc:
        if _referrer is None:
            raise
        raise ConfigError(f"{_referrer}: key 'parent': {exc}") from None
    here = path.resolve()
    chain = (*_chain, here)
    config: dict[str, Any] = {}
    parent = raw.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise ConfigError(f"{path}: key 'parent' = {clip(parent)}: expected a file name or null")
    if parent:
        try:
            parent_path = _parent_path(parent, path)
            found = parent_path.exists()
        except OSError as exc:  # e.g. a name too long for the file system
            raise ConfigError(f"{path}: key 'parent': {clip(parent)}: {exc.strerror or exc}; expected a file name") from None
        if not found:
            raise ConfigError(f"{path}: key 'parent': {clip(parent)} not found (from the cwd or beside the file)")
        if parent_path.resolve() in chain:
            loop = " -> ".join(str(p) for p in (*chain, parent_path.resolve()))
            raise ConfigError(f"{path}: key 'parent': {clip(parent)} makes a cycle ({loop}); expected a chain that ends")
        if len(chain) >= MAX_PARENT_DEPTH:
            raise ConfigError(f"{path}: key 'parent': more than {MAX_PARENT_DEPTH} levels of parents; expected a short chain")
        deep_update(config, load_config(parent_path, chain, path))
    return deep_update(config, raw)
