"""ros-bridge on a real ROS 2 graph (DDS on loopback): camera process -> bridge process -> served policy -> /cmd_vel.

Processes: a `robovlms-mobile serve` with the tiny checkpoint, a camera publishing bgr8 640x480 at 10 Hz
(graph_nodes.py camera), `robovlms-mobile ros-bridge --server ...` with its action log, and an operator
that records /cmd_vel and publishes /e_stop. Times compared across processes are CLOCK_MONOTONIC,
which all processes on one machine share; time bounds carry SLACK_S for scheduling on a loaded machine.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

from graph import NODES, Proc, Record, actions, bridge, moving, node, ros_env
from helpers import free_port
from robovlms_mobile.ros.safety import clamp_velocity

pytestmark = pytest.mark.skipif(importlib.util.find_spec("rclpy") is None,
                                reason="the ROS 2 wheels are not installed (pip install -r requirements-ros.txt)")

API_KEY = "graph-test-key-0123456789"
LIMIT = 0.05  # m/s: small enough that the tiny policy's answers get clamped
DEADLINE = 0.5
SLACK_S = 1.0
SAFETY = ["--max-linear-x", str(LIMIT), "--max-linear-y", str(LIMIT), "--max-accel", "0", "--deadline", str(DEADLINE)]


def _server_process():
    spec = importlib.util.spec_from_file_location("_serve_server_process",
                                                  Path(__file__).parents[1] / "serve" / "server_process.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def policy_server(tiny_checkpoint, tiny_model_dir, tmp_path_factory):
    """A real policy server for the graph (API key on); the last test kills it."""
    sp = _server_process()
    server = sp.start_server(tiny_checkpoint, tiny_model_dir, tmp_path_factory.mktemp("graph-server") / "server.log",
                             env={"ROBOVLMS_MOBILE_API_KEY": API_KEY})
    yield server
    sp.stop_server(server)


def zero(row) -> bool:
    return row[1] == 0.0 and row[2] == 0.0


def nonzero_rows(rows):
    return [r for r in rows if not zero(r)]


def test_bridge_drives_stops_and_exits_on_a_real_graph(policy_server, tmp_path):
    operator = node("operator", tmp_path, str(tmp_path / "cmd_vel.txt"), stdin=True)
    camera = node("camera", tmp_path)
    br = bridge(tmp_path, policy_server.url, *SAFETY, env=ros_env(ROBOVLMS_MOBILE_API_KEY=API_KEY))
    record, log = Record(tmp_path / "cmd_vel.txt"), tmp_path / "bridge-actions.jsonl"
    try:
        # 1. it drives, and every Twist is the server's answer after the safety clamp
        record.wait(lambda rows: len(nonzero_rows(rows)) >= 5, what="5 moving commands")
        answers = [a for a in actions(log) if a["accepted"]]
        expected = {clamp_velocity(*a["velocity"], LIMIT, LIMIT)[0] for a in answers}
        for _, vx, vy in nonzero_rows(record.rows()):
            assert (vx, vy) in expected, f"Twist {(vx, vy)} is no clamped server answer"
            assert abs(vx) <= LIMIT + 1e-12 and abs(vy) <= LIMIT + 1e-12

        # 2. e-stop latches: zeros only, no policy answer taken, until the release
        engaged = time.monotonic()
        operator.send("estop true")
        rows = record.wait(lambda rows: len(record.after(engaged + SLACK_S)) >= 10, what="10 commands after the e-stop")
        latched = [r for r in rows if r[0] > engaged + SLACK_S]
        assert latched and all(map(zero, latched))
        released = time.monotonic()
        assert not [a for a in actions(log) if a["accepted"] and engaged + SLACK_S < a["answered"] < released]
        operator.send("estop false")
        record.wait(lambda rows: moving(record.after(released)), what="motion after the release")
        # nothing computed from a frame captured before the release was taken after it
        assert all(a["stamp"] > released for a in actions(log) if a["accepted"] and a["answered"] > released + SLACK_S)

        # 3. the camera stops: zero within the deadline, and zeros keep coming
        stopped = time.monotonic()
        camera.stop()
        record.wait(lambda rows: len(record.after(stopped + DEADLINE + SLACK_S)) >= 5, what="commands after the camera stopped")
        late = nonzero_rows(record.after(stopped + DEADLINE + SLACK_S))
        assert not late, f"moving {late[0][0] - stopped:.2f} s after the camera stopped"
        camera = node("camera", tmp_path)
        resumed = time.monotonic()
        record.wait(lambda rows: moving(record.after(resumed)), what="motion with the camera back")

        # 4. exit while moving: the last command on /cmd_vel is zero, and the bridge exits 0
        assert br.stop() == 0, br.text()[-3000:]
        record.wait(lambda rows: rows and zero(rows[-1]), timeout=10, what="a zero after the bridge exited")
        assert "stopped, zero published" in br.text() and "Traceback" not in br.text()
    finally:
        for proc in (br, camera, operator):
            proc.stop()


STEP_S = 0.4  # --tick-hz 2.5: one chunk step per 0.4 s, as recorded; a chunk of 10 lasts 4 s
LATENCY_S = 1.0  # injected per answer: 2.5 steps


def wait_until(predicate, what: str, timeout: float = 60):
    """Until predicate() gives something truthy; returns it."""
    until = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > until:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)
    return value


def test_async_bridge_drives_through_a_slow_server_and_stops(policy_server, tmp_path):
    """Every answer 1 s late: /cmd_vel keeps executing the queued chunk, e-stop and a dead server end in zero."""
    port = free_port()
    proxy = Proc("slow_proxy", [sys.executable, NODES, "slow_proxy", str(port), policy_server.url, str(LATENCY_S)], tmp_path)
    proxy.wait_for("slow proxy ready")
    operator = node("operator", tmp_path, str(tmp_path / "cmd_vel.txt"), stdin=True)
    camera = node("camera", tmp_path)
    # --max-frame-age 2: a frame a loaded machine delivered late is still used; its answer is aligned by its delay
    br = bridge(tmp_path, f"http://127.0.0.1:{port}", *SAFETY, "--execution", "async", "--tick-hz", str(1 / STEP_S),
                "--max-frame-age", "2", env=ros_env(ROBOVLMS_MOBILE_API_KEY=API_KEY))
    record, log = Record(tmp_path / "cmd_vel.txt"), tmp_path / "bridge-actions.jsonl"
    accepted = lambda: [a for a in actions(log) if a["accepted"]]  # noqa: E731
    try:
        # 1. four answers, each >= 1 s after its frame; between the first motion and the fourth answer /cmd_vel
        #    never paused longer than a step and carried only (clamped) actions of the queued plans
        answers = wait_until(lambda: a if len(a := accepted()) >= 4 else None, "4 accepted answers")[:4]
        assert all(a["answered"] - a["stamp"] >= LATENCY_S for a in answers)
        assert all(a["delay_steps"] >= 2 for a in answers)  # late by more than two steps: actions dropped
        rows = record.rows()
        first = next(r[0] for r in rows if not zero(r))
        window = [r for r in rows if first <= r[0] <= answers[-1]["answered"]]
        assert window and not [r for r in window if zero(r)], "a zero while answers were pending"
        gaps = [b[0] - a[0] for a, b in zip(window, window[1:])]
        assert max(gaps) <= STEP_S, f"/cmd_vel paused {max(gaps):.2f} s (one step is {STEP_S} s)"
        planned = {clamp_velocity(vx, vy, LIMIT, LIMIT)[0] for a in actions(log) if a["accepted"] for _, vx, vy in a["plan"]}
        assert {(vx, vy) for _, vx, vy in window} <= planned

        # 2. e-stop: zero, and no answer taken until the release; after it nothing from an earlier frame
        operator.send("estop true")
        operator.wait_for("published estop true")
        engaged = time.monotonic()
        record.wait(lambda rows: len(record.after(engaged + SLACK_S)) >= 10, what="10 commands after the e-stop")
        assert not nonzero_rows(record.after(engaged + SLACK_S))
        operator.send("estop false")
        operator.wait_for("published estop false")
        released = time.monotonic()
        record.wait(lambda rows: moving(record.after(released)), what="motion after the release")
        assert all(a["stamp"] > released - SLACK_S for a in accepted() if a["answered"] > released + SLACK_S)

        # 3. the (slow) server dies: zero within the deadline, and zeros keep coming
        proxy.proc.kill()
        proxy.proc.wait()
        killed = time.monotonic()
        record.wait(lambda rows: len(record.after(killed + DEADLINE + SLACK_S)) >= 10, what="commands after the kill")
        late = nonzero_rows(record.after(killed + DEADLINE + SLACK_S))
        assert not late, f"moving {late[0][0] - killed:.2f} s after the server died"
        assert br.stop() == 0 and "Traceback" not in br.text()
    finally:
        for proc in (br, camera, operator, proxy):
            proc.stop()


@pytest.mark.slow  # ~20 s more on top of the fast graph test: its own bridge, camera and operator
def test_bridge_stops_when_the_server_dies(policy_server, tmp_path):
    operator = node("operator", tmp_path, str(tmp_path / "cmd_vel.txt"), stdin=True)
    camera = node("camera", tmp_path)
    br = bridge(tmp_path, policy_server.url, *SAFETY, env=ros_env(ROBOVLMS_MOBILE_API_KEY=API_KEY))
    record = Record(tmp_path / "cmd_vel.txt")
    try:
        record.wait(lambda rows: len(nonzero_rows(rows)) >= 3, what="3 moving commands")
        killed = time.monotonic()
        policy_server.process.kill()
        policy_server.process.wait()
        record.wait(lambda rows: len(record.after(killed + DEADLINE + SLACK_S)) >= 10, what="commands after the kill")
        late = nonzero_rows(record.after(killed + DEADLINE + SLACK_S))
        assert not late, f"moving {late[0][0] - killed:.2f} s after the server died"
        assert br.proc.poll() is None, "the bridge must keep running (and publishing zero) without its server"
        assert br.stop() == 0
        assert "Traceback" not in br.text()
    finally:
        for proc in (br, camera, operator):
            proc.stop()
