"""Value checks for config keys: each returns None when the value is fine, else what was expected."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], "str | None"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}$")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def anything(v: Any) -> str | None:
    """Any JSON value."""
    return None


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    """An integer (not a bool, not a string) within [lo, hi]."""
    if lo == 1 and hi is None:
        want = "a positive integer"
    elif lo == 0 and hi is None:
        want = "an integer >= 0"
    else:
        want = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" <= {hi}" if hi is not None else "")

    def check(v: Any) -> str | None:
        ok = _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
        return None if ok else want
    return check


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    """A finite number within the bounds (open or closed)."""
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    want = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(v: Any) -> str | None:
        if not _is_number(v):
            return want
        if lo is not None and (v <= lo if lo_open else v < lo):
            return want
        if hi is not None and (v >= hi if hi_open else v > hi):
            return want
        return None
    return check


def boolean(v: Any) -> str | None:
    """true or false."""
    return None if isinstance(v, bool) else "bool (true or false)"


def string(v: Any) -> str | None:
    """A non-empty string."""
    return None if isinstance(v, str) and v.strip() else "a non-empty string"


def path_like(v: Any) -> str | None:
    """A non-empty path string (or a pathlib path: upstream main.py turns the roots into Path objects)."""
    import os

    return None if isinstance(v, os.PathLike) or (isinstance(v, str) and v.strip()) else "a path"


def name(v: Any) -> str | None:
    """A plain folder name: letters, digits and ._+=- (no '/', no '..')."""
    return None if isinstance(v, str) and NAME_RE.match(v) and ".." not in v else "a plain name (letters, digits, ._+=-; no '/' or '..')"


def one_of(*values: Any) -> Check:
    """Exactly one of `values` (bools are not numbers here)."""
    def check(v: Any) -> str | None:
        ok = any(v == x and type(v) is type(x) for x in values)
        return None if ok else "one of " + ", ".join(repr(x) for x in values)
    return check


def optional(inner: Check) -> Check:
    """null, or what `inner` accepts."""
    def check(v: Any) -> str | None:
        if v is None:
            return None
        got = inner(v)
        return None if got is None else f"null or {got}"
    return check


def paths(v: Any) -> str | None:
    """A folder path or a non-empty list of them."""
    if isinstance(v, str) and v.strip():
        return None
    if isinstance(v, list) and v and all(isinstance(x, str) and x.strip() for x in v):
        return None
    return "a folder path or a list of folder paths"


def list_of(inner: Check, n: int | None = None) -> Check:
    """A list of values `inner` accepts (of length n when given)."""
    def check(v: Any) -> str | None:
        if isinstance(v, list) and (n is None or len(v) == n) and all(inner(x) is None for x in v):
            return None
        return f"a list of {n if n is not None else ''} values".replace("  ", " ")
    return check


def obj(v: Any) -> str | None:
    """A JSON object."""
    return None if isinstance(v, dict) else "an object"


def is_false(v: Any) -> str | None:
    """false (the feature is not available for 2-DOF navigation)."""
    return None if v is False else "false"


def is_null(v: Any) -> str | None:
    """null."""
    return None if v is None else "null"
