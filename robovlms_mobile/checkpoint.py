"""Plugin checkpoints: trainable weights + what inference needs, loaded without unpickling code.

A Lightning checkpoint written by `MobileVLATrainer` keeps only the trainable tensors (action
token, decoder, LoRA) in `state_dict` and adds a `mobile_vla` entry with the resolved config,
the action scale and the prompt format. The frozen backbone comes from its own folder.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

PLUGIN_KEY = "mobile_vla"
FORMAT_VERSION = 1


class UnsafeCheckpointError(RuntimeError):
    """The file needs arbitrary pickled code to load; refused."""


def json_safe(value: Any) -> Any:
    """A JSON-round-trippable copy of a config (Paths and other objects become strings)."""
    return json.loads(json.dumps(value, default=str))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load with weights_only=True; a checkpoint carrying a pickled payload is refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path}: refusing to load: it needs arbitrary pickled objects, which could run code "
            f"({str(exc).splitlines()[0]})"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a checkpoint (no 'state_dict')")
    return ckpt


def plugin_info(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> dict[str, Any]:
    """The `mobile_vla` metadata of a plugin checkpoint (config, action scale, prompt)."""
    info = ckpt.get(PLUGIN_KEY)
    if not isinstance(info, dict):
        raise ValueError(f"{path}: not a robovlms-mobile checkpoint (no '{PLUGIN_KEY}' entry)")
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {info.get('format_version')!r}, expected {FORMAT_VERSION}")
    return info
