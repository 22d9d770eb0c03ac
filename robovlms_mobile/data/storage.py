"""What an episode file may not do: link elsewhere, keep data outside itself, or declare data it does not store.

Checked from metadata only, before any data is read: a dataset reached through an external or
soft link, a virtual dataset, external raw storage, an HDF5 filter this machine lacks, chunks
that were declared but never written (read back as fill values), more decompressed bytes
than gzip can produce from what is stored, or more chunks than its size is worth (each chunk
costs a lookup and a filter call: 61k one-byte chunks keep a reader busy for minutes).
"""

from __future__ import annotations

import math

import h5py

from robovlms_mobile.data.format import MAX_COMPRESSION_RATIO, MIN_MEAN_CHUNK_BYTES, SPARE_CHUNKS


class StorageError(ValueError):
    """A dataset (or link) the episode reader refuses; `code` is the Problem code."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def member(f: h5py.File, key: str, tag: str) -> h5py.Dataset | h5py.Group | None:
    """f[key] reached through hard links only, or None when absent; raises StorageError for any other link."""
    node = f
    for part in key.split("/"):
        if not isinstance(node, h5py.Group):
            return None
        link = node.get(part, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            raise StorageError("external_link", f"{tag} '{key}' is an external link to {link.filename}:{link.path}; "
                                                "episode files must hold their own data")
        if isinstance(link, h5py.SoftLink):
            raise StorageError("external_link", f"{tag} '{key}' is a soft link to {link.path}; expected the data itself")
        node = node[part]
    return node


def storage_problem(ds: h5py.Dataset, tag: str) -> StorageError | None:
    """Why the stored data of `ds` cannot be trusted, or None."""
    name = f"{tag} '{ds.name.lstrip('/')}'"
    if ds.is_virtual:
        return StorageError("virtual_dataset", f"{name} is a virtual dataset (its data lives in other files); "
                                               "episode files must hold their own data")
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count() > 0:
        return StorageError("external_storage", f"{name} keeps its raw data in external file(s); "
                                                "episode files must hold their own data")
    for i in range(dcpl.get_nfilters()):
        code, _, _, filter_name = dcpl.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            label = filter_name.decode(errors="replace") if isinstance(filter_name, bytes) else filter_name
            return StorageError("filter", f"{name} is compressed with HDF5 filter {code} ({label!r}), which is not "
                                          "available here; expected gzip, lzf or no compression")
    n_values = math.prod(ds.shape) if ds.shape else 1
    if n_values == 0:
        return None
    stored = ds.id.get_storage_size()
    if ds.chunks is not None:
        expected = math.prod(math.ceil(s / c) for s, c in zip(ds.shape, ds.chunks))
        worth = max(ds.shape[0] if ds.shape else 1, ds.nbytes // MIN_MEAN_CHUNK_BYTES) + SPARE_CHUNKS
        if expected > worth:
            return StorageError("chunk_count", f"{name} of shape {ds.shape} ({ds.nbytes} bytes) is stored in {expected} "
                                               f"chunks of shape {ds.chunks}; expected at most {worth} (one per step, or "
                                               f"{MIN_MEAN_CHUNK_BYTES} bytes per chunk on average)")
        written = ds.id.get_num_chunks()
        if written < expected:
            return StorageError("unwritten_data", f"{name} declares shape {ds.shape} but stores only {written} of its "
                                                  f"{expected} chunks (the rest would read as fill values)")
    elif h5py.check_vlen_dtype(ds.dtype) is None and ds.dtype.kind != "O" and stored < ds.id.get_type().get_size() * n_values:
        return StorageError("unwritten_data", f"{name} declares shape {ds.shape} ({ds.nbytes} bytes) but stores {stored} bytes")
    if h5py.check_vlen_dtype(ds.dtype) is None and ds.dtype.kind != "O" and ds.nbytes > MAX_COMPRESSION_RATIO * max(stored, 1):
        return StorageError("unwritten_data", f"{name} declares {ds.nbytes} bytes in {stored} stored bytes: more than "
                                              f"{MAX_COMPRESSION_RATIO}:1, which gzip cannot produce")
    return None
