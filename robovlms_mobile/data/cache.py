"""Preprocessed frame cache: each episode's frames resized once to (T, S, S, 3) uint8 RGB `.npy` files.

An entry's file name is a hash of (absolute source path, size, mtime_ns, image size, cache
version), so a changed source file gets a new entry (and the stale one is removed). Entries
are written to a temporary name and renamed, so ranks or runs building the same entry at once
never see a half-written file. Reading a window is a memory-mapped slice: no HDF5, no gzip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from robovlms_mobile.data.episode import Episode, read_frames_stored
from robovlms_mobile.data.transforms import resize_frames

VERSION = 1  # bump when resize_frames changes what it produces
MANIFEST = "manifest.json"
log = logging.getLogger("robovlms_mobile.data")


class FrameCache:
    """Resized frames per episode under `cache_dir`, built with `build`, read with `frames`."""

    def __init__(self, cache_dir: str | Path, image_size: int):
        self.dir = Path(cache_dir)
        self.image_size = int(image_size)
        self._entries: dict[Path, Path] = {}  # source path -> entry file, fixed when built
        self._maps: dict[Path, np.ndarray] = {}
        self._pid = os.getpid()

    def key(self, source: Path) -> dict:
        """What an entry depends on."""
        st = source.stat()
        return {"path": str(source.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "image_size": self.image_size, "version": VERSION}

    def entry_path(self, source: Path) -> Path:
        """The entry file for the source file as it is now."""
        digest = hashlib.sha256(json.dumps(self.key(source), sort_keys=True).encode()).hexdigest()[:24]
        return self.dir / f"{Path(source).stem[:60]}-{digest}.npy"

    def build(self, episodes: Sequence[Episode], *, progress: bool = True) -> int:
        """Create the missing entries (progress bar); returns how many were built."""
        self.dir.mkdir(parents=True, exist_ok=True)
        todo = []
        for episode in episodes:
            entry = self._entries[episode.path] = self.entry_path(episode.path)
            if not _valid_entry(entry, episode, self.image_size):
                todo.append(episode)
        for episode in tqdm(todo, desc=f"caching frames ({self.image_size}px)", unit="episode", disable=not progress or not todo):
            self._write(episode, self._entries[episode.path])
        if todo:
            self._update_manifest(episodes)
            log.info("frame cache %s: built %d of %d episodes", self.dir, len(todo), len(episodes))
        return len(todo)

    def _write(self, episode: Episode, entry: Path) -> None:
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        shape = (episode.num_frames, self.image_size, self.image_size, 3)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        with h5py.File(episode.path, "r") as f:
            for t in range(episode.num_frames):  # one frame at a time: bounded memory at 720x1280
                frame, bgr = read_frames_stored(f, episode, t, t + 1)
                out[t] = resize_frames(frame, self.image_size, bgr=bgr)[0].numpy()
        out.flush()
        del out
        os.replace(tmp, entry)

    def _update_manifest(self, episodes: Sequence[Episode]) -> None:
        path = self.dir / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            manifest = {}
        for episode in episodes:
            entry = self._entries[episode.path]
            key = f"{episode.path.resolve()}@{self.image_size}px"  # sizes do not replace each other
            old = manifest.get(key, {}).get("entry")
            if old and old != entry.name and (self.dir / old).exists():
                (self.dir / old).unlink()  # the source changed: its old frames are stale
            manifest[key] = {**self.key(episode.path), "entry": entry.name}
        tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def frames(self, episode: Episode, start: int, stop: int) -> np.ndarray:
        """Resized RGB uint8 frames [start, stop) of a built episode (n, S, S, 3)."""
        if self._pid != os.getpid():  # forked worker: own maps
            self._maps, self._pid = {}, os.getpid()
        data = self._maps.get(episode.path)
        if data is None:
            data = self._maps[episode.path] = np.load(self._entries[episode.path], mmap_mode="r")
        return np.array(data[start:stop])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state


def _valid_entry(entry: Path, episode: Episode, size: int) -> bool:
    try:
        data = np.load(entry, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return data.shape == (episode.num_frames, size, size, 3) and data.dtype == np.uint8
