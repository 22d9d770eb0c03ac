"""Atomic checkpoint writes: a kill or a full disk mid-save never leaves a corrupt checkpoint.

Lightning writes through an fsspec transaction whose temporary file lives in the system temp
dir, so the final step can be a cross-device copy into place. Here the bytes go to a temporary
file beside the target, are fsynced, then `os.replace`d over it (atomic on POSIX), and the
directory entry is fsynced too. On failure the temporary file is removed and the previous
checkpoint is untouched. Reads (`train --resume`) go through the plugin's guarded
`load_checkpoint`: weights_only=True whatever the environment says, one-line errors.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from robovlms_mobile.checkpoint.format import load_checkpoint


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save `obj` to `path` atomically (temp file in the same dir + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"could not write checkpoint {path}: {exc.strerror}; the previous file is intact") from exc
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO that saves with `atomic_torch_save` and loads with the guarded `load_checkpoint` (local paths)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """The guarded read (weights_only=True always; `weights_only=False` from a caller is refused)."""
        if weights_only is False:
            raise ValueError(f"{path}: refusing weights_only=False; checkpoints are read with weights_only=True")
        return load_checkpoint(path)
