"""Plugin checkpoints on disk: the one guarded read, and the one-line errors it raises.

A Lightning checkpoint written by `MobileVLATrainer` keeps only the trainable tensors (action
token, decoder, LoRA) in `state_dict` and adds a `mobile_vla` entry with the resolved config,
the action scale, the prompt format, the window/chunk it was trained with and the training
instructions (see checkpoint_meta.py and docs/checkpoints.md). The frozen backbone comes from its own folder.

Every read goes through `load_checkpoint`: `torch.load(..., weights_only=True)` passed explicitly,
which torch honours whatever `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` says (that variable only flips
calls that leave `weights_only` unset), after checks that turn empty, truncated and non-torch
files into one line naming the file.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

PLUGIN_KEY = "mobile_vla"
FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (the legacy raw-pickle format is not accepted)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message is one line naming the file and what was expected."""


class UnsafeCheckpointError(CheckpointError):
    """The file needs arbitrary pickled code to load; refused."""


def json_safe(value: Any) -> Any:
    """A JSON-round-trippable copy of a config (Paths and other objects become strings)."""
    return json.loads(json.dumps(value, default=str))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def check_checkpoint_file(path: Path) -> None:
    """Exists, non-empty, and a complete zip archive as torch.save writes it; else one line saying which."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file; expected a checkpoint written by torch.save (a zip archive)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != ZIP_MAGIC:
        raise CheckpointError(f"{path}: not a torch checkpoint ({size} bytes, no zip header); expected a file "
                              f"written by torch.save / Lightning")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: truncated or damaged ({size} bytes, no zip end record); expected a complete "
                              f"torch checkpoint")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, read once with weights_only=True; every failure is a one-line CheckpointError."""
    path = Path(path)
    check_checkpoint_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise UnsafeCheckpointError(
                f"{path}: refusing to load: it needs arbitrary pickled objects, which could run code "
                f"({_first_line(exc)})"
            ) from None
        raise CheckpointError(f"{path}: damaged checkpoint data ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile, MemoryError) as exc:
        raise CheckpointError(f"{path}: unreadable torch checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a checkpoint (expected a dict with a 'state_dict' of tensors)")
    for key, value in ckpt["state_dict"].items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: 'state_dict' entry {str(key)[:80]!r} is not a named tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: tensor {key!r} has non-finite values (damaged file or diverged training); "
                                  f"expected finite weights")
    return ckpt
