"""Preprocessed frame cache: each episode's frames resized once to (T, S, S, 3) uint8 RGB `.npy` files.

An entry's file name is a hash of (absolute source path, size, mtime_ns, image size, cache
version), so a changed source file gets a new entry (and the stale one is removed). Entries
are written to an unnamed file (Linux O_TMPFILE: nothing is left behind if the process is
killed) or, where the file system lacks it, a `.robovlms-cache-<pid>-<entry>.tmp` name that the next
build removes once its process is gone; then they are linked/renamed into place, so ranks or runs
building the same entry at once never see a half-written file. Before building, the needed
bytes are compared with the free space (and the size bound `max_bytes`): a cache that cannot
fit is refused. Reading a window is a memory-mapped slice: no HDF5, no gzip.

The folder is not trusted: the cache reads and deletes only names of its own form (`ENTRY_RE`,
temp files with the `.robovlms-cache-` prefix), as plain files directly inside the folder (no links,
no `..`, no absolute paths), and deletes an old entry only when its own manifest records it; a
manifest that is not what it writes (not an object, wrong types) is rebuilt with a notice.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from robovlms_mobile.data.episode import Episode
from robovlms_mobile.data.frames import read_frames_stored
from robovlms_mobile.data.transforms import resize_frames
from robovlms_mobile.outputs import process_alive
from robovlms_mobile.errors import clip

VERSION = 1  # bump when resize_frames changes what it produces
MANIFEST = "manifest.json"
FREE_MARGIN = 2**30  # bytes left free on the cache's disk after building
DEFAULT_MAX_BYTES = 2**40  # a size bound for one cache folder (1 TiB), whatever the free space
TEMP_PREFIX = ".robovlms-cache-"  # only this tool writes names starting so
ENTRY_RE = re.compile(r"[^/\x00]{0,60}-[0-9a-f]{24}\.npy")
TEMP_RE = re.compile(re.escape(TEMP_PREFIX) + r"(?P<pid>[0-9]{1,10})-(?P<name>manifest\.json|[^/\x00]{0,60}-[0-9a-f]{24}\.npy)\.(?:tmp|link)")
log = logging.getLogger("robovlms_mobile.data")


class FrameCache:
    """Resized frames per episode under `cache_dir`, built with `build`, read with `frames`."""

    def __init__(self, cache_dir: str | Path, image_size: int, max_bytes: int = DEFAULT_MAX_BYTES):
        self.dir = Path(cache_dir)
        self.image_size = int(image_size)
        self.max_bytes = int(max_bytes)
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
        remove_stale_temp_files(self.dir)
        todo = []
        for episode in episodes:
            entry = self._entries[episode.path] = self.entry_path(episode.path)
            if not _valid_entry(entry, episode, self.image_size):
                todo.append(episode)
        self._check_room(todo)
        for episode in tqdm(todo, desc=f"caching frames ({self.image_size}px)", unit="episode", disable=not progress or not todo):
            self._write(episode, self._entries[episode.path])
        if todo:
            self._update_manifest(episodes)
            log.info("frame cache %s: built %d of %d episodes", self.dir, len(todo), len(episodes))
        return len(todo)

    def entry_bytes(self, episode: Episode) -> int:
        """Size of one entry file (frames plus the .npy header)."""
        return episode.num_frames * self.image_size * self.image_size * 3 + 128

    def _check_room(self, todo: Sequence[Episode]) -> None:
        needed = sum(self.entry_bytes(e) for e in todo)
        if not needed:
            return
        free = shutil.disk_usage(self.dir).free
        if needed > self.max_bytes or needed + FREE_MARGIN > free:
            raise OSError(f"cache_dir {self.dir}: the frame cache needs {needed / 2**20:.0f} MB for {len(todo)} episode(s) "
                          f"at {self.image_size}px but the disk has {free / 2**20:.0f} MB free (keeping "
                          f"{FREE_MARGIN / 2**20:.0f} MB) and the bound is {self.max_bytes / 2**20:.0f} MB; "
                          "free space, choose another cache_dir, or remove cache_dir")

    def _write(self, episode: Episode, entry: Path) -> None:
        shape = (episode.num_frames, self.image_size, self.image_size, 3)
        with _temp_file(entry) as (fh, finish):
            np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
            with h5py.File(episode.path, "r") as f:
                for t in range(episode.num_frames):  # one frame at a time: bounded memory at 720x1280
                    frame, bgr = read_frames_stored(f, episode, t, t + 1, min_size=self.image_size)
                    fh.write(resize_frames(frame, self.image_size, bgr=bgr)[0].numpy().tobytes())
            finish()

    def _update_manifest(self, episodes: Sequence[Episode]) -> None:
        path = self.dir / MANIFEST
        manifest = read_manifest(self.dir)
        for episode in episodes:
            entry = self._entries[episode.path]
            key = f"{episode.path.resolve()}@{self.image_size}px"  # sizes do not replace each other
            old = manifest.get(key, {}).get("entry")
            if old and old != entry.name and own_file(self.dir, old):
                (self.dir / old).unlink()  # the source changed: its old frames are stale
            manifest[key] = {**self.key(episode.path), "entry": entry.name}
        tmp = self.dir / f"{TEMP_PREFIX}{os.getpid()}-{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def frames(self, episode: Episode, start: int, stop: int, step: int = 1) -> np.ndarray:
        """Resized RGB uint8 frames start, start + step, ... < stop of a built episode (n, S, S, 3)."""
        if self._pid != os.getpid():  # forked worker: own maps
            self._maps, self._pid = {}, os.getpid()
        data = self._maps.get(episode.path)
        if data is None:
            data = self._maps[episode.path] = np.load(self._entries[episode.path], mmap_mode="r")
        return np.array(data[start:stop:step])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state


def own_file(cache_dir: Path, name: object) -> bool:
    """True when `name` is an entry name of this cache's form, a plain file directly inside `cache_dir` (resolved)."""
    if not isinstance(name, str) or ENTRY_RE.fullmatch(name) is None:
        return False
    path = cache_dir / name
    return not path.is_symlink() and path.is_file() and path.resolve().parent == cache_dir.resolve()


def read_manifest(cache_dir: Path) -> dict[str, dict]:
    """The manifest as this cache writes it ({key: {..., "entry": name}}); anything else is dropped with a notice."""
    path = cache_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        if path.is_symlink() or not path.is_file():
            raise ValueError("is not a plain file")
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError(f"holds a JSON {type(doc).__name__}, not an object")
        bad = [k for k, v in doc.items() if not isinstance(v, dict) or not isinstance(v.get("entry"), str)
               or ENTRY_RE.fullmatch(v["entry"]) is None]
        if bad:
            raise ValueError(f"entry {clip(bad[0])} is not {{..., \"entry\": <a cache file name>}}")
        return doc
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        log.warning("frame cache %s: %s %s; rebuilding it (nothing outside the cache's own files is deleted)",
                    cache_dir, MANIFEST, str(exc)[:200])
        return {}


def _valid_entry(entry: Path, episode: Episode, size: int) -> bool:
    if entry.is_symlink() or not entry.is_file() or entry.resolve().parent != entry.parent.resolve():
        return False  # a link (or anything but our own file) at an entry's name is replaced, never read
    try:
        data = np.load(entry, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return data.shape == (episode.num_frames, size, size, 3) and data.dtype == np.uint8


@contextlib.contextmanager
def _temp_file(entry: Path) -> Iterator[tuple]:
    """(binary file, finish) writing `entry` atomically; finish() puts it in place; nothing is left on failure or kill."""
    fd = None
    if hasattr(os, "O_TMPFILE"):
        try:
            fd = os.open(entry.parent, os.O_TMPFILE | os.O_WRONLY, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise
    named = entry.with_name(f"{TEMP_PREFIX}{os.getpid()}-{entry.name}.tmp") if fd is None else None
    fh = open(named, "wb") if named else os.fdopen(fd, "wb")

    def finish() -> None:
        fh.flush()
        os.fsync(fh.fileno())
        if named:
            os.replace(named, entry)
            return
        link = entry.with_name(f"{TEMP_PREFIX}{os.getpid()}-{entry.name}.link")
        root = os.open("/", os.O_RDONLY)
        try:  # linkat(AT_SYMLINK_FOLLOW) gives the unnamed file a name (os.link uses it when a dir fd is given)
            os.link(f"/proc/self/fd/{fh.fileno()}", link, src_dir_fd=root, follow_symlinks=True)
        finally:
            os.close(root)
        os.replace(link, entry)

    try:
        with fh:
            yield fh, finish
    finally:
        if named and named.exists():
            named.unlink()


def remove_stale_temp_files(cache_dir: Path) -> int:
    """Delete this tool's `.robovlms-cache-<pid>-<entry>.tmp|link` files whose process is gone (left by a killed
    build); returns how many. Other names, links and folders are left alone."""
    removed = 0
    for tmp in cache_dir.glob(f"{TEMP_PREFIX}*"):
        match = TEMP_RE.fullmatch(tmp.name)
        if match is None or tmp.is_symlink() or not tmp.is_file():
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not process_alive(pid):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
