"""Which instructions a checkpoint was trained on, and the optional map from the robot's strings to them.

The robot may send strings the model never read in training ("center_straight", a long English
sentence). `InstructionBook.resolve` translates them through the instruction map (exact match
after stripping) and says whether the text the model reads was among the checkpoint's training
instructions: True / False, or None when the checkpoint does not record them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robovlms_mobile.errors import DuplicateKeyError, clip, unique_keys
from robovlms_mobile.task import MAX_INSTRUCTION_CHARS, check_instruction

log = logging.getLogger("uvicorn.error")
MAP_KEY = "instruction_map"  # the key when the map sits inside a config file
MAX_MAP_ENTRIES = 10_000
MAX_MAP_BYTES = 16 * 1024 * 1024
MAX_LOGGED = 1024  # distinct instructions logged once each


def trained_instructions(meta: Any) -> frozenset[str] | None:
    """The instructions recorded in checkpoint metadata (typed or a dict), or None when not recorded."""
    value = getattr(meta, "instructions", None)
    if value is None and isinstance(meta, dict):
        nested = meta.get("metadata")
        value = meta.get("instructions") if "instructions" in meta else (
            nested.get("instructions") if isinstance(nested, dict) else None)
    if value is None:
        return None
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"checkpoint metadata 'instructions': expected a list of strings, got {type(value).__name__}")
    return frozenset(v.strip() for v in value)


def load_instruction_map(path: str | Path) -> dict[str, str]:
    """A JSON object {robot string: trained instruction}, alone or under 'instruction_map' in a config file."""
    path = Path(path)
    where = f"--instruction-map {str(path)!r}"
    if not path.is_file():
        raise ValueError(f"{where}: not a file")
    if path.stat().st_size > MAX_MAP_BYTES:
        raise ValueError(f"{where}: {path.stat().st_size} bytes; the limit is {MAX_MAP_BYTES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=unique_keys)
    except DuplicateKeyError as exc:
        raise ValueError(f"{where}: key {clip(exc.args[0])} appears twice; expected each key once") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{where}: not a JSON file ({str(exc).splitlines()[0][:200]})") from None
    if isinstance(data, dict) and MAP_KEY in data:
        data, where = data[MAP_KEY], f"{where} key {MAP_KEY!r}"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object {{robot instruction: trained instruction}}, got {type(data).__name__}")
    if len(data) > MAX_MAP_ENTRIES:
        raise ValueError(f"{where}: {len(data)} entries; the limit is {MAX_MAP_ENTRIES}")
    out = {}
    for key, value in data.items():
        src = check_instruction(key, where=f"{where} key {clip(key)}")
        out[src] = check_instruction(value, where=f"{where} value of {clip(key)}")
    return out


@dataclass
class Resolved:
    """One request's instruction: what the robot sent, what the model reads, whether training saw it."""

    sent: str
    used: str
    seen: bool | None

    def fields(self) -> dict[str, Any]:
        """The reply fields."""
        out: dict[str, Any] = {"instruction_seen": self.seen}
        if self.used != self.sent:
            out["instruction_used"] = self.used
        return out


@dataclass
class InstructionBook:
    """The checkpoint's training instructions (None: unknown) and the robot-to-trained map."""

    trained: frozenset[str] | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    _logged: set[str] = field(default_factory=set)

    def resolve(self, sent: str) -> Resolved:
        """Map the (checked) instruction and say whether training saw the result; logs each new one once."""
        used = self.mapping.get(sent, sent)
        seen = None if self.trained is None else used in self.trained
        if sent not in self._logged and len(self._logged) < MAX_LOGGED:
            self._logged.add(sent)
            mapped = f" -> mapped to {used!r}" if used != sent else ""
            state = {True: "true", False: "false", None: "null (the checkpoint does not record its instructions)"}[seen]
            (log.warning if seen is False else log.info)("instruction %r%s: instruction_seen %s", sent, mapped, state)
        return Resolved(sent, used, seen)

    def describe(self) -> dict[str, Any]:
        """For /health: how many instructions are known and mapped."""
        return {"trained": None if self.trained is None else len(self.trained), "mapped": len(self.mapping),
                "max_chars": MAX_INSTRUCTION_CHARS}
