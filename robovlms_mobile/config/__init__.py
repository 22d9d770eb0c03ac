"""Experiment configs: upstream's JSON format (with `parent` inheritance), checked key by key.

Files are plain upstream RoboVLMs configs, so `main.py configs/mobile_vla_lora.json` reads them
unchanged. The lab's original configs are accepted too: their keys are rewritten to ours with one
notice line each (compat.py), keys that do nothing here are named in one notice line, and any
other key is an error (keys.py lists them all; `robovlms-mobile config check FILE` prints them).

    load.py      reading files safely (regular file, size bound, parent cycles, finite numbers)
    keys.py      every known key: used / mapped / no effect here, and its value check
    compat.py    original and upstream names -> ours, the notices
    validate.py  validate_config
    report.py    `robovlms-mobile config check`
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from robovlms_mobile.config.load import ConfigError, deep_update, load_config
from robovlms_mobile.config.keys import CNN_TYPE, DATASET_TYPE, HEAD_TYPE, TRAINER_TYPE
from robovlms_mobile.config.compat import no_effect_notice, resolve
from robovlms_mobile.config.validate import REQUIRED_TOP, validate_config

__all__ = ["ConfigError", "deep_update", "load_config", "validate_config", "prepare_config", "CNN_TYPE", "DATASET_TYPE",
           "HEAD_TYPE", "TRAINER_TYPE", "REQUIRED_TOP"]


def prepare_config(config: str | Path | dict[str, Any], source: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """(canonical checked config, notice lines) from a file or a dict; errors are one ConfigError line."""
    if isinstance(config, dict):
        configs, source = copy.deepcopy(config), source or "config"
    else:
        configs, source = load_config(config), source or str(config)
    notes = resolve(configs, source) if isinstance(configs, dict) else []
    validate_config(configs, source)
    extra = no_effect_notice(configs)
    return configs, [*notes, *([extra] if extra else [])]
