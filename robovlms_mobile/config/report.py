"""`robovlms-mobile config check FILE`: per key, what it does in this package; exit 2 on the first error."""

from __future__ import annotations

import json
import sys
from typing import Any

from robovlms_mobile.config.compat import is_mobile
from robovlms_mobile.config.keys import LAUNCHER_SET, MAPPED, NO_EFFECT, SECTIONS, TOP, USED, Key
from robovlms_mobile.errors import clip

UNKNOWN = "unknown -> error"


def _value(v: Any, width: int = 34) -> str:
    text = json.dumps(v, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


def _row(key: str, value: Any, spec: Key | None) -> tuple[str, str, str, str]:
    if spec is None:
        return key, _value(value), UNKNOWN, "no such key here"
    if spec.kind == NO_EFFECT and spec.neutral(value):
        return key, _value(value), NO_EFFECT, spec.what + " (this value: no notice)"
    return key, _value(value), spec.kind, spec.what


def rows(configs: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(key, value, kind, what it does) for every key of a merged config, sections expanded."""
    out = []
    for key, value in configs.items():
        table = SECTIONS.get(key)
        if table is not None and isinstance(value, dict):
            for sub, sub_value in value.items():
                spec = table.get(sub)
                if key == "trainer" and spec is None and sub in LAUNCHER_SET:
                    spec = Key(USED, "set by the launcher: remove it")
                out.append(_row(f"{key}.{sub}", sub_value, spec))
        else:
            out.append(_row(key, value, TOP.get(key)))
    return out


def check_file(path: str, out: Any = sys.stdout) -> int:
    """Print the key table and the notices `train` would print; raises ConfigError on the first problem."""
    from robovlms_mobile.config import ConfigError, load_config, prepare_config

    configs = load_config(path)
    if not is_mobile(configs):
        print(f"{path}: an upstream config (no MobileVLAH5Dataset / MobileVLATrainer): upstream reads every key; "
              "only the LoRA keys are checked here", file=out)
        prepare_config(configs, path)
        return 0
    table = rows(configs)
    widths = [max(len(r[i]) for r in table) for i in range(2)]
    print(f"{'KEY':<{widths[0]}}  {'VALUE':<{widths[1]}}  WHAT IT DOES HERE", file=out)
    for key, value, kind, what in table:
        print(f"{key:<{widths[0]}}  {value:<{widths[1]}}  {kind}: {what}", file=out)
    counts = {k: sum(r[2] == k for r in table) for k in (USED, MAPPED, NO_EFFECT, UNKNOWN)}
    print(f"{len(table)} keys: " + ", ".join(f"{n} {k}" for k, n in counts.items()), file=out)
    unknown = [r[0] for r in table if r[2] == UNKNOWN]
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(clip(k) for k in unknown[:10])}; expected only the keys listed "
                          "in docs/configs.md")
    _, notes = prepare_config(configs, path)
    for line in notes:
        print(f"notice: {line}", file=out)
    print(f"{path}: OK ({len(notes)} notice(s); `robovlms-mobile train` prints the same notices)", file=out)
    return 0
