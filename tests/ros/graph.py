"""Processes of the real ROS 2 test graph: start, wait for their lines, read the /cmd_vel record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

NODES = str(Path(__file__).with_name("graph_nodes.py"))
CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
ROOT = Path(__file__).resolve().parents[2]


def ros_env(**extra: str) -> dict[str, str]:
    """This environment, DDS on loopback, the worktree importable."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "PYTHONPATH": path,
            "PYTHONUNBUFFERED": "1", **extra}


class Proc:
    """A child process whose stdout+stderr go to a log file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None,
                 stdin: bool = False):
        self.name, self.log = name, log_dir / f"{name}.log"
        self.proc = subprocess.Popen(argv, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env or ros_env(),
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, text=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, line: str, timeout: float = 120) -> None:
        """Until `line` is in the log (raises with the log if the process exits or time runs out)."""
        until = time.monotonic() + timeout
        while line not in self.text():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.text()[-4000:]}")
            if time.monotonic() > until:
                raise AssertionError(f"{self.name}: no {line!r} within {timeout} s:\n{self.text()[-4000:]}")
            time.sleep(0.05)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def node(role: str, log_dir: Path, *args: str, stdin: bool = False, env: dict[str, str] | None = None) -> Proc:
    """One of graph_nodes.py's roles, started and ready."""
    proc = Proc(role, [sys.executable, NODES, role, *args], log_dir, env=env, stdin=stdin)
    proc.wait_for(f"{role.replace('_', ' ')} ready")
    return proc


def bridge(log_dir: Path, server_url: str, *args: str, name: str = "bridge", env: dict[str, str] | None = None) -> Proc:
    """`robovlms-mobile ros-bridge --server URL` with an action log, started and spinning."""
    argv = [CLI, "ros-bridge", "--server", server_url, "--instruction", "go around the box on the left",
            "--action-log", str(log_dir / f"{name}-actions.jsonl"), *args]
    proc = Proc(name, argv, log_dir, env=env)
    proc.wait_for("ros-bridge: frames from")
    return proc


class Row(NamedTuple):
    """One /cmd_vel message as the operator received it."""

    seq: int  # the bridge's publication sequence number: 1 for its first message
    t: float  # monotonic time of receipt (for failure messages only: nothing is asserted on it)
    vx: float
    vy: float


class Record:
    """The operator's /cmd_vel record, one Row per message."""

    def __init__(self, path: Path):
        self.path = path

    def rows(self) -> list[Row]:
        if not self.path.exists():
            return []
        lines = [line.split() for line in self.path.read_text().splitlines() if line.count(" ") == 3]
        return [Row(int(seq), float(t), float(vx), float(vy)) for seq, t, vx, vy in lines]

    def since(self, seq: int) -> list[Row]:
        """The messages the bridge published from its `seq`-th on."""
        return [r for r in self.rows() if r.seq >= seq]

    def wait(self, predicate, timeout: float = 60, what: str = "") -> list[Row]:
        """Until predicate(rows) is true; returns the rows (the timeout only guards against a hang)."""
        until = time.monotonic() + timeout
        while True:
            rows = self.rows()
            if predicate(rows):
                return rows
            if time.monotonic() > until:
                raise AssertionError(f"/cmd_vel never showed {what} within {timeout} s; last: {rows[-5:]}")
            time.sleep(0.05)


def zero(row: Row) -> bool:
    return row.vx == 0.0 and row.vy == 0.0


def moving(rows) -> bool:
    return any(not zero(r) for r in rows)


def log_records(path: Path) -> list[dict]:
    """Every line of the bridge's action log."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def actions(path: Path) -> list[dict]:
    """The policy answers in the bridge's action log."""
    return [r for r in log_records(path) if "event" not in r]


def events(path: Path, kind: str) -> list[dict]:
    """The bridge's `kind` events ("estop": each e-stop change; "state": each change of the published state)."""
    return [r for r in log_records(path) if r.get("event") == kind]


def wait_until(predicate, what: str, timeout: float = 60):
    """Until predicate() gives something truthy; returns it (the timeout only guards against a hang)."""
    until = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > until:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)
    return value


def next_event(path: Path, kind: str, where, after: int = 0, what: str = "") -> tuple[int, dict]:
    """Wait for the first `kind` event past the first `after` ones for which where(event) holds; returns (index, event)."""
    def find():
        return next(((i, e) for i, e in enumerate(events(path, kind)[after:], start=after) if where(e)), None)

    return wait_until(find, what or f"{kind} event in the bridge's log")
