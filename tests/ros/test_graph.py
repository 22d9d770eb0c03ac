"""ros-bridge on a real ROS 2 graph (DDS on loopback): camera process -> bridge process -> served policy -> /cmd_vel.

Processes: a `robovlms-mobile serve` with the tiny checkpoint, a camera publishing bgr8 640x480 at 10 Hz
(graph_nodes.py camera), `robovlms-mobile ros-bridge --server ...` with its action log, and an operator
that records /cmd_vel and publishes /e_stop. Every step waits for events, not for time to pass: the
bridge logs each e-stop change and each change of what it publishes with the sequence number of the
/cmd_vel message that first carried it, and the operator records every message's sequence number, so
"every message after the e-stop took effect" is exact whatever the machine's load. Timeouts only
guard against a hang; the watchdog's deadline in seconds is checked with a fake clock (test_safety.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from graph import NODES, Proc, Record, actions, bridge, events, moving, next_event, node, ros_env, wait_until, zero
from helpers import free_port
from robovlms_mobile.ros.safety import ESTOP, OK, clamp_velocity

pytestmark = pytest.mark.skipif(importlib.util.find_spec("rclpy") is None,
                                reason="the ROS 2 wheels are not installed (pip install -r requirements-ros.txt)")

API_KEY = "graph-test-key-0123456789"
LIMIT = 0.05  # m/s: small enough that the tiny policy's answers get clamped
DEADLINE = 0.5
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


def nonzero_rows(rows):
    return [r for r in rows if not zero(r)]


def estop_latches(operator: Proc, record: Record, log: Path) -> tuple[dict, dict, dict]:
    """Engage the e-stop, see 10 zero messages, release it; returns the engage and release events and the state after.

    Exact by sequence number: every /cmd_vel message from the first one the bridge published in
    the e-stop state up to the first one after the release is zero, and no answer computed in the
    e-stop's epoch was accepted.
    """
    estops, states = len(events(log, "estop")), len(events(log, "state"))
    operator.send("estop true")
    _, engaged = next_event(log, "estop", lambda e: e["engaged"], after=estops, what="the bridge taking the e-stop")
    i, stopped = next_event(log, "state", lambda e: e["state"] == ESTOP, after=states, what="a message in the e-stop state")
    record.wait(lambda rows: len(record.since(stopped["seq"])) >= 10, what="10 commands after the e-stop")
    assert not moving(record.since(stopped["seq"]))
    operator.send("estop false")
    _, released = next_event(log, "estop", lambda e: not e["engaged"], after=estops, what="the bridge taking the release")
    _, resumed = next_event(log, "state", lambda e: e["state"] != ESTOP, after=i + 1, what="a message after the release")
    latched = [r for r in record.wait(lambda rows: rows and rows[-1].seq >= resumed["seq"], what="the release message")
               if stopped["seq"] <= r.seq < resumed["seq"]]
    assert len(latched) >= 10 and not moving(latched)
    assert not [a for a in actions(log) if a["accepted"] and a["epoch"] == engaged["epoch"]]
    return engaged, released, resumed


def nothing_from_before(released: dict, log: Path) -> None:
    """Every answer accepted since the release was computed from a frame captured after it."""
    since = [a for a in actions(log) if a["accepted"] and a["epoch"] >= released["epoch"]]
    assert since and all(a["stamp"] >= released["barrier"] for a in since)


def stop_settles(record: Record, log: Path, after: int, what: str, n: int = 5) -> dict:
    """Wait until the bridge's newest state change past the first `after` is a stop carried by n messages; returns it."""
    def settled():
        changes = events(log, "state")[after:]
        if changes and changes[-1]["state"] != OK and len(record.since(changes[-1]["seq"])) >= n:
            return changes[-1]
        return None

    stop = wait_until(settled, what)
    assert not moving(record.since(stop["seq"])), f"moving after the bridge published {stop['state']}"
    return stop


def start_graph(tmp_path: Path, server_url: str, *args: str) -> tuple[dict[str, Proc], Record, Path]:
    """Operator, camera and a bridge to `server_url` (SAFETY, then `args`), each ready; the /cmd_vel record, the action log."""
    procs = {"operator": node("operator", tmp_path, str(tmp_path / "cmd_vel.txt"), stdin=True),
             "camera": node("camera", tmp_path)}
    procs["bridge"] = bridge(tmp_path, server_url, *SAFETY, *args, env=ros_env(ROBOVLMS_MOBILE_API_KEY=API_KEY))
    return procs, Record(tmp_path / "cmd_vel.txt"), tmp_path / "bridge-actions.jsonl"


def stop_all(procs) -> None:
    """The bridge first (its closing zero reaches the operator), then the rest."""
    for proc in reversed(list(procs)):
        proc.stop()


def test_bridge_drives_stops_and_exits_on_a_real_graph(policy_server, tmp_path):
    procs, record, log = start_graph(tmp_path, policy_server.url)
    operator, br = procs["operator"], procs["bridge"]
    try:
        # 1. it drives, and every Twist is the server's answer after the safety clamp
        record.wait(lambda rows: len(nonzero_rows(rows)) >= 5, what="5 moving commands")
        answers = [a for a in actions(log) if a["accepted"]]
        expected = {clamp_velocity(*a["velocity"], LIMIT, LIMIT)[0] for a in answers}
        for r in nonzero_rows(record.rows()):
            assert (r.vx, r.vy) in expected, f"Twist {(r.vx, r.vy)} is no clamped server answer"
            assert abs(r.vx) <= LIMIT + 1e-12 and abs(r.vy) <= LIMIT + 1e-12

        # 2. e-stop latches: zeros only, no policy answer taken, until the release; then it drives again,
        #    and nothing computed from a frame captured before the release was taken after it
        _, released, resumed = estop_latches(operator, record, log)
        record.wait(lambda rows: moving(record.since(resumed["seq"])), what="motion after the release")
        nothing_from_before(released, log)

        # 3. the camera stops: the bridge stops the robot and keeps publishing zero; it drives again with frames
        changes = len(events(log, "state"))
        procs["camera"].stop()
        stop = stop_settles(record, log, changes, "a stop after the camera stopped")
        procs["camera"] = node("camera", tmp_path)
        record.wait(lambda rows: moving(record.since(stop["seq"])), what="motion with the camera back")

        # 4. exit while moving: the last command on /cmd_vel is zero, and the bridge exits 0
        assert br.stop() == 0, br.text()[-3000:]
        record.wait(lambda rows: rows and zero(rows[-1]), timeout=10, what="a zero after the bridge exited")
        assert "stopped, zero published" in br.text() and "Traceback" not in br.text()
    finally:
        stop_all(procs.values())


STEP_S = 0.4  # --tick-hz 2.5: one chunk step per 0.4 s, as recorded; a chunk of 10 lasts 4 s
LATENCY_S = 1.0  # injected per answer: 2.5 steps


def test_async_bridge_drives_through_a_slow_server_and_stops(policy_server, tmp_path):
    """Every answer 1 s late: /cmd_vel keeps executing the queued chunk, e-stop and a dead server end in zero."""
    port = free_port()
    proxy = Proc("slow_proxy", [sys.executable, NODES, "slow_proxy", str(port), policy_server.url, str(LATENCY_S)], tmp_path)
    proxy.wait_for("slow proxy ready")
    # --max-frame-age 2: a frame a loaded machine delivered late is still used; its answer is aligned by its delay
    procs, record, log = start_graph(tmp_path, f"http://127.0.0.1:{port}", "--execution", "async",
                                     "--tick-hz", str(1 / STEP_S), "--max-frame-age", "2")
    operator, br = procs["operator"], procs["bridge"]
    accepted = lambda: [a for a in actions(log) if a["accepted"]]  # noqa: E731
    try:
        # 1. four answers, each >= 1 s after its frame (the proxy's delay, on the bridge's clock); from the first
        #    moving message until then the published state never left "ok" (the queued plan carried every step
        #    while answers were pending) and /cmd_vel carried only (clamped) actions of the queued plans
        answers = wait_until(lambda: a if len(a := accepted()) >= 4 else None, "4 accepted answers")[:4]
        assert all(a["answered"] - a["stamp"] >= LATENCY_S for a in answers)
        assert all(a["delay_steps"] >= 2 for a in answers)  # late by more than two steps: actions dropped
        rows = record.rows()
        changes = events(log, "state")
        k, first = next((i, e) for i, e in enumerate(changes) if e["state"] == OK)
        window = [r for r in rows if r.seq >= first["seq"]]
        assert window and not [r for r in window if zero(r)], "a zero while answers were pending"
        assert not [e for e in changes[k + 1:] if e["seq"] <= window[-1].seq], f"the plan ran out: {changes[k + 1:]}"
        planned = {clamp_velocity(vx, vy, LIMIT, LIMIT)[0] for a in accepted() for _, vx, vy in a["plan"]}
        assert {(r.vx, r.vy) for r in window} <= planned

        # 2. e-stop: zero, and no answer taken until the release; after it nothing from an earlier frame
        _, released, resumed = estop_latches(operator, record, log)
        record.wait(lambda rows: moving(record.since(resumed["seq"])), what="motion after the release")
        nothing_from_before(released, log)

        # 3. the (slow) server dies: the bridge stops the robot and keeps publishing zero
        changes = len(events(log, "state"))
        proxy.proc.kill()
        proxy.proc.wait()
        stop_settles(record, log, changes, "a stop after the server died", n=10)
        assert br.stop() == 0 and "Traceback" not in br.text()
    finally:
        stop_all([proxy, *procs.values()])


@pytest.mark.slow  # ~20 s more on top of the fast graph test: its own bridge, camera and operator
def test_bridge_stops_when_the_server_dies(policy_server, tmp_path):
    procs, record, log = start_graph(tmp_path, policy_server.url)
    br = procs["bridge"]
    try:
        record.wait(lambda rows: len(nonzero_rows(rows)) >= 3, what="3 moving commands")
        changes = len(events(log, "state"))
        policy_server.process.kill()
        policy_server.process.wait()
        stop_settles(record, log, changes, "a stop after the server died", n=10)
        assert br.proc.poll() is None, "the bridge must keep running (and publishing zero) without its server"
        assert br.stop() == 0
        assert "Traceback" not in br.text()
    finally:
        stop_all(procs.values())
