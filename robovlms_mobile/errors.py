"""User-input errors shared by every floor: raised where the input is read, mapped to exit 2 by `cli/errors.py`.

Also how a refusal echoes what it refused (`clip`), and the JSON hook every input reader uses (`unique_keys`).
"""

from __future__ import annotations

from typing import Any

MAX_ECHO_CHARS = 80  # a refusal quotes what it refused, but never more than this of it


class ConfigError(ValueError):
    """A config value that is missing, unknown or of the wrong type; the message names the file and key."""


class StoppedBySignal(Exception):
    """A long run ended by SIGTERM after saving what it had; the message says where and how to resume (exit 143)."""


class DuplicateKeyError(ValueError):
    """A key given twice in one JSON object (`json` would keep the last silently); args[0] is the key."""


def clip(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """repr(value), cut to `limit` characters with the full length said: a 1 MB string never becomes a 1 MB error line."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}… ({len(value)} {unit})"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for every JSON input: a dict, or DuplicateKeyError naming the repeated key."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out
