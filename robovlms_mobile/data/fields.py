"""Reading the parts of an episode file besides the frames: instruction, actions, event types, the content hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

from robovlms_mobile.data.format import text
from robovlms_mobile.data.frames import is_jpeg_storage
from robovlms_mobile.task import MAX_INSTRUCTION_CHARS, check_instruction

_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> content hash, per process


def read_instruction(raw: h5py.Dataset | h5py.Group, tag: str) -> str:
    """`language_instruction` as checked text; raises ValueError naming what was expected."""
    where = f"{tag} 'language_instruction'"
    if not isinstance(raw, h5py.Dataset):
        raise ValueError(f"{where} is a group; expected a string dataset")
    if raw.dtype.kind not in "SOU" or (raw.dtype.kind == "O" and h5py.check_string_dtype(raw.dtype) is None):
        raise ValueError(f"{where} has dtype {raw.dtype}; expected a UTF-8 string")
    if raw.ndim > 1 or raw.size == 0:
        raise ValueError(f"{where} has shape {raw.shape}; expected one string (shape () or (1,))")
    if raw.dtype.kind == "S" and raw.dtype.itemsize > 4 * MAX_INSTRUCTION_CHARS + 16:
        raise ValueError(f"{where} is stored as {raw.dtype.itemsize}-byte strings; the limit is "
                         f"{MAX_INSTRUCTION_CHARS} characters")
    value = raw[()] if raw.ndim == 0 else raw[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{where} is not valid UTF-8") from None
    return check_instruction(str(value).strip("\x00"), where=where)


def content_hash(path: Path, images: h5py.Dataset, actions: h5py.Dataset) -> str:
    """sha256 of the actions and the *stored* image bytes (compressed chunks, JPEG bytes: no decoding).

    Two files are duplicates when they hold the same recording byte for byte (a copy, a rename);
    memoised per process on (path, size, mtime_ns), so a second scan costs nothing.
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    h = hashlib.sha256()
    h.update(f"{images.shape}|{images.dtype}|{actions.shape}|{actions.dtype}".encode())
    h.update(np.ascontiguousarray(actions[()]).tobytes())
    dsid = images.id
    if is_jpeg_storage(images):
        for buf in images[()]:
            h.update(len(buf).to_bytes(8, "little"))
            h.update(buf.tobytes())
    elif images.chunks is None:
        h.update(np.ascontiguousarray(images[()]).tobytes())
    else:
        offsets: list[tuple[int, ...]] = []
        if hasattr(dsid, "chunk_iter"):  # one pass over the index; get_chunk_info(i) walks i chunks (quadratic)
            dsid.chunk_iter(lambda info: offsets.append(info.chunk_offset))
        else:  # HDF5 < 1.12.3: by index, affordable since storage_problem bounds the chunk count
            offsets = [dsid.get_chunk_info(i).chunk_offset for i in range(dsid.get_num_chunks())]
        for offset in sorted(offsets):
            h.update(dsid.read_direct_chunk(offset)[1])
    _HASHES[key] = digest = h.hexdigest()
    return digest


def read_actions(f: h5py.File) -> np.ndarray:
    """All action columns as float32 (T, 3) [linear_x, linear_y, angular_z] (angular_z 0 when absent)."""
    raw = np.asarray(f["actions"][()], dtype=np.float32)
    out = np.zeros((len(raw), 3), np.float32)
    out[:, : min(3, raw.shape[1])] = raw[:, :3]
    return out


def read_event_types(f: h5py.File) -> list[str] | None:
    """V4 `action_event_types` as str, or None when the file has none."""
    if "action_event_types" not in f:
        return None
    return [text(v) for v in np.asarray(f["action_event_types"][()]).reshape(-1)]
