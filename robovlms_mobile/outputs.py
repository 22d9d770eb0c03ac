"""Files and folders the tool writes: never onto its inputs, never over a file it did not write, one run per folder.

Every command that writes goes through this module:

- `claim(path, inputs)` before a file is written refuses a path that is (resolved, or the same
  inode as) one of the command's inputs, a folder, or an existing file the tool did not write;
  `overwrite=True` (a command's `--overwrite`) lets it replace a file, and the command names it.
  `written(path)` afterwards records the file in its folder's `.robovlms-mobile-written.json`
  (name -> inode, size, mtime), so a later run may replace what an earlier run wrote, and only that.
- `FolderLock` (a `.robovlms-mobile.lock` file holding the pid) refuses a second run into a folder
  in use; a lock left by a dead process is taken over with a notice.
- `check_output_root(value, key)` expands `~` and refuses the file-system root and system folders.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

RECORD = ".robovlms-mobile-written.json"
LOCK = ".robovlms-mobile.lock"
SYSTEM_FOLDERS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin",
                  "/sys", "/usr", "/var")  # and anything under them (except the per-user temp folders below)
ALLOWED_UNDER_SYSTEM = ("/var/tmp", "/run/user", "/var/folders")  # temp folders that live under a system folder


class OutputError(ValueError):
    """An output path the tool refuses (an input, a file it did not write, a folder in use, a system folder)."""


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_not_input(path: str | Path, inputs: Iterable[str | Path], flag: str = "--out") -> Path:
    """`path` unless it is one of `inputs` (by resolved path or inode: links and hard links included)."""
    path = Path(path)
    resolved, ident = path.resolve(), _identity(path)
    if any(Path(p).resolve() == resolved or (ident is not None and _identity(Path(p)) == ident) for p in inputs):
        raise OutputError(f"{flag} {path}: is one of this command's input files; choose another output path")
    return path


def _read_record(folder: Path) -> dict[str, list[int]]:
    try:
        doc = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def is_ours(path: str | Path) -> bool:
    """True when the tool wrote `path` (recorded in its folder) and it has not changed since."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    return _read_record(path.parent).get(path.name) == _stamp(path)


def claim(path: str | Path, inputs: Iterable[str | Path] = (), *, flag: str = "--out", overwrite: bool = False) -> Path:
    """`path`, checked before the tool writes it: not an input, not a folder, and new, written by the tool, or `overwrite`."""
    path = check_not_input(path, inputs, flag)
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; expected a file path")
    if path.is_symlink():
        raise OutputError(f"{flag} {path}: is a symbolic link; expected a new file or one this tool wrote")
    if path.exists() and not overwrite and not is_ours(path):
        raise OutputError(f"{flag} {path}: exists and was not written by robovlms-mobile; remove it or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def written(*paths: str | Path) -> None:
    """Record files the tool has just written in their folders' records (under a file lock: ranks and workers share folders)."""
    by_folder: dict[Path, list[Path]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.parent, []).append(p)
    for folder, files in by_folder.items():
        fd = os.open(folder, os.O_RDONLY)  # the folder itself is the lock: no extra file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            doc = _read_record(folder)
            doc.update({p.name: _stamp(p) for p in files if p.is_file()})
            tmp = folder / f"{RECORD}.{os.getpid()}.robovlms-tmp"
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
            os.replace(tmp, folder / RECORD)
        finally:
            os.close(fd)


@contextlib.contextmanager
def writing(path: str | Path, inputs: Iterable[str | Path] = (), *, flag: str = "--out", overwrite: bool = False) -> Iterator[Path]:
    """`with writing(path, inputs) as p: <write p>`: claim before, record after."""
    p = claim(path, inputs, flag=flag, overwrite=overwrite)
    yield p
    written(p)


def write_text(path: str | Path, text: str, inputs: Iterable[str | Path] = (), *, flag: str = "--out") -> Path:
    """Write a text file through `claim`/`written`."""
    with writing(path, inputs, flag=flag) as p:
        p.write_text(text)
    return p


def place_files(source: str | Path, dest: str | Path, *, flag: str = "DIR") -> list[Path]:
    """Move every file of the built folder `source` into `dest`, each `claim`ed first: nothing is placed when any
    one would replace a file the tool did not write. Returns the placed paths."""
    source, dest = Path(source), check_folder(dest, flag=flag)
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink())
    targets = [claim(dest / p.relative_to(source), flag=flag) for p in files]
    for src, target in zip(files, targets):
        os.replace(src, target)
        written(target)
    return targets


def check_folder(folder: str | Path, inputs: Iterable[str | Path] = (), *, flag: str = "--out") -> Path:
    """An output folder: not an input file, not a file; created."""
    folder = check_not_input(folder, inputs, flag)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {folder}: exists and is not a folder; expected an output folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_output_root(value: str | Path, key: str = "output_root") -> Path:
    """`value` with `~` expanded, refused when it is the file-system root, the home folder itself, or a system folder."""
    raw = str(value)
    if not raw.strip() or "\x00" in raw:
        raise OutputError(f"{key}: expected a folder path, got {raw!r}")
    path = Path(os.path.expanduser(raw))
    resolved = Path(os.path.abspath(path))
    with contextlib.suppress(OSError):
        resolved = path.resolve()
    text = resolved.as_posix()
    home = Path.home().resolve()
    if resolved == Path("/") or resolved == home:
        raise OutputError(f"{key} {raw!r} is {text}: expected a folder of its own for runs (e.g. 'runs')")
    system = [s for s in SYSTEM_FOLDERS if text == s or text.startswith(s + "/")]
    if system and not any(text == a or text.startswith(a + "/") for a in ALLOWED_UNDER_SYSTEM):
        raise OutputError(f"{key} {raw!r} is {text}, inside the system folder {system[0]}: expected a folder of your own")
    return path


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (a lock or temp file of a dead one may be taken over)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """`with FolderLock(folder, what):` one run at a time in `folder`; a dead process's lock is taken over with a notice."""

    def __init__(self, folder: str | Path, what: str = "output folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK
        self.held = False

    def acquire(self) -> FolderLock:
        """Take the lock or raise OutputError naming the process that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._holder()
                if pid is not None and pid != os.getpid() and process_alive(pid):
                    raise OutputError(f"{self.what} {self.folder} is in use by process {pid} (lock {self.path}); wait for "
                                      "it to finish or choose another folder") from None
                print(f"robovlms-mobile: notice: {self.what} {self.folder}: taking over the lock of process "
                      f"{pid if pid is not None else '?'}, which is gone", file=sys.stderr)
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            self.held = True
            return self
        raise OutputError(f"{self.what} {self.folder}: could not take the lock {self.path}")

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held and self._holder() == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self.held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
