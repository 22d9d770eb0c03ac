"""Plugin checkpoints on disk: the one guarded read, and the one-line errors it raises.

A Lightning checkpoint written by `MobileVLATrainer` keeps only the trainable tensors (action
token, decoder, LoRA) in `state_dict` and adds a `mobile_vla` entry with the resolved config,
the action scale, the prompt format, the window/chunk it was trained with and the training
instructions (see checkpoint_meta.py and docs/checkpoints.md). The frozen backbone comes from its own folder.

Every read goes through `load_checkpoint`: `torch.load(..., weights_only=True)` passed explicitly,
which torch honours whatever `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` says (that variable only flips
calls that leave `weights_only` unset), after checks that turn empty, truncated and non-torch
files into one line naming the file. What a file may make the loader allocate is bounded by its
own size before anything is read: the zip records must be stored (torch.save never compresses;
a deflated record could inflate to GiBs), lie inside the file and add up to at most its size;
after the read, no tensor may be a view larger than its storage (a stride-0 or overlapping view
would expand to GiBs in the first operation on it).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from robovlms_mobile.errors import MAX_ECHO_CHARS, clip

PLUGIN_KEY = "mobile_vla"
FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (the legacy raw-pickle format is not accepted)
MAX_CHECKPOINT_BYTES = 64 * 2**30  # a full fine-tune of Kosmos-2 with its optimizer state is ~20 GB
MAX_NESTING = 64  # containers inside a checkpoint (Lightning's are a few levels deep)


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
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path}: {size} bytes; expected a checkpoint of at most {MAX_CHECKPOINT_BYTES} bytes")
    check_records(path, size)


def check_records(path: Path, size: int) -> None:
    """Every zip record stored (not compressed), inside the file, and all of them together no larger than the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path}: damaged zip archive ({_first_line(exc)}); expected a complete torch checkpoint") from None
    total = 0
    for record in records:
        name = clip(record.filename)
        if record.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{path}: record {name} is compressed (zip method {record.compress_type}); torch.save "
                                  "writes stored records, and a compressed one could inflate to any size")
        if record.file_size != record.compress_size or record.header_offset + record.file_size > size:
            raise CheckpointError(f"{path}: record {name} declares {record.file_size} bytes at offset "
                                  f"{record.header_offset}, past the end of the {size}-byte file")
        total += record.file_size
    if total > size:
        raise CheckpointError(f"{path}: its records declare {total} bytes in all, more than the {size}-byte file holds "
                              "(overlapping records)")


def check_tensor_views(value: Any, path: Path, where: tuple[str, ...] = (), depth: int = 0) -> None:
    """Refuse any tensor (anywhere in the loaded object) that views more elements than its storage holds, or repeats one."""
    if depth > MAX_NESTING:
        raise CheckpointError(f"{path}: {clip('.'.join(where))} is nested more than {MAX_NESTING} levels deep; "
                              "expected a checkpoint dict")
    if isinstance(value, torch.Tensor):
        extent = value.numel() * value.element_size()
        room = value.untyped_storage().nbytes() - value.storage_offset() * value.element_size()
        if extent > room or any(st == 0 and n > 1 for st, n in zip(value.stride(), value.shape)):
            raise CheckpointError(f"{path}: tensor {clip('.'.join(where))} declares shape {tuple(value.shape)} "
                                  f"with strides {value.stride()} "
                                  f"over a storage of {value.untyped_storage().nbytes()} bytes (a stride-0 or overlapping view "
                                  "that would expand); expected tensors as torch.save writes them")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_tensor_views(item, path, (*where, str(key)[:MAX_ECHO_CHARS]), depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_tensor_views(item, path, (*where, str(i)), depth + 1)


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
    check_tensor_views(ckpt, path)
    for key, value in ckpt["state_dict"].items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: 'state_dict' entry {clip(key)} is not a named tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: tensor {clip(key)} has non-finite values (damaged file or diverged training); "
                                  f"expected finite weights")
    return ckpt
