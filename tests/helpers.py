"""Small utilities for tests that run real subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_python(code: str, *args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -c code args...` in a fresh interpreter of this venv; raises with its output on failure."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def last_json_line(stdout: str) -> Any:
    """The last line of stdout that parses as JSON."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    raise AssertionError(f"no JSON line in output:\n{stdout[-3000:]}")


def build_once(tmp_path_factory: Any, name: str, build: Any) -> Path:
    """`build(folder)` once per test run, shared by every pytest-xdist worker (file lock); returns what it returned.

    Session fixtures run once per xdist worker; this puts their output in the run's common
    base temp dir so the second worker waits for, then reuses, the first worker's build.
    """
    import shutil

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # .../pytest-N/popen-gwK -> .../pytest-N, common to the workers
    folder = root / f"shared-{name}"
    with FileLock(str(folder) + ".lock"):
        done = folder.with_name(folder.name + ".done")
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            done.write_text(str(build(folder)))
        return Path(done.read_text())


def jpeg_declaring(data: bytes, height: int, width: int) -> bytes:
    """JPEG bytes whose SOF0 header is rewritten to declare height x width (the entropy data stays as small as it was)."""
    data = bytearray(data)
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def jpeg_with_repeated_scans(rgb: Any, n: int) -> bytes:
    """A progressive JPEG of `rgb` whose last scan is repeated n times (each repeat: a decoder pass over every pixel)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, progressive=True)
    data = buf.getvalue()
    sos, eoi = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:eoi] + data[sos:eoi] * n + data[eoi:]
