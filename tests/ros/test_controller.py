"""DriveController with a real in-process policy and a fake clock: ticks, stale frames, failures, e-stop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from robovlms_mobile.ros.controller import DriveController
from robovlms_mobile.ros.safety import ESTOP, IDLE, OK, STALE, SafetyConfig, SafetyLayer
from robovlms_mobile.runtime.in_process import InProcessPolicy
from robovlms_mobile.runtime.policy import MobileVLAPolicy
from robovlms_mobile.runtime.client import encode_jpeg

GO = "go around the box on the left and stop in front of the bottle"


class FakeClock:
    def __init__(self):
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def policy(tiny_checkpoint, tiny_model_dir):
    return MobileVLAPolicy.from_checkpoint(tiny_checkpoint, base_model_dir=tiny_model_dir)


@pytest.fixture
def rig(policy):
    clock = FakeClock()
    safety = SafetyLayer(SafetyConfig(max_linear_x=0.05, max_linear_y=1.0, deadline_s=0.5, max_accel=None), clock)
    source = InProcessPolicy.wrap(policy)
    return DriveController(source, safety, GO, max_frame_age_s=0.3, clock=clock), source, clock


def test_tick_feeds_the_safety_layer(rig, frames):
    controller, source, clock = rig
    assert not controller.tick()  # no frame yet
    assert controller.command().state == IDLE
    clock.t += 0.1
    controller.on_frame(frames[0])
    assert controller.tick()
    command = controller.command()
    v = source.last.velocity
    scale = min(1.0, 0.05 / abs(v[0]))
    assert command.state == OK
    np.testing.assert_allclose([command.linear_x, command.linear_y], v * scale)  # clamped, direction kept
    assert not controller.tick()  # the same frame is not used twice


def test_newest_frame_wins_and_old_frames_are_skipped(rig, frames):
    controller, source, clock = rig
    controller.on_frame(frames[0])
    controller.on_frame(frames[1])
    controller.tick()
    assert source.episode.queries == 1
    controller.on_frame(frames[2])
    clock.t += 0.31
    assert not controller.tick() and controller.skipped_stale == 1


def test_compressed_frames(rig, frames):
    controller, source, clock = rig
    controller.on_frame(encode_jpeg(frames[0]))
    assert controller.tick() and source.last.chunk.shape == (10, 2)


def test_failing_source_lets_the_watchdog_stop(rig, frames):
    controller, source, clock = rig
    controller.on_frame(frames[0])
    controller.tick()
    clock.t += 0.1
    assert controller.command().state == OK

    def broken(*_):
        raise ConnectionError("link down")

    source.act = broken
    controller.on_frame(frames[1])
    assert not controller.tick()
    assert controller.errors == 1 and "link down" in controller.last_error
    clock.t += 0.45  # 0.55 s after the last good frame
    assert controller.command()[:3] == (0.0, 0.0, STALE)


def test_estop_and_release_start_a_new_episode(rig, frames):
    controller, source, clock = rig
    for f in frames[:3]:
        controller.on_frame(f)
        controller.tick()
    assert source.episode.tick == 3
    controller.on_estop(True)
    assert controller.command()[:3] == (0.0, 0.0, ESTOP)
    controller.on_frame(frames[3])
    assert not controller.tick()  # no queries while stopped
    controller.on_estop(False)
    clock.t += 0.1
    assert source.episode.tick == 0 and controller.command().state == IDLE
    controller.on_frame(frames[4])
    clock.t += 0.1
    assert controller.tick() and controller.command().state == OK


def test_instruction_change_starts_a_new_episode(rig, frames):
    controller, source, clock = rig
    controller.on_frame(frames[0])
    controller.tick()
    controller.set_instruction("go around the box on the right and stop in front of the bottle")
    assert source.episode.tick == 0
    controller.set_instruction("   ")  # ignored
    assert controller.instruction.endswith("right and stop in front of the bottle")


def test_worker_thread_ticks_until_stopped(policy, frames):
    safety = SafetyLayer(SafetyConfig())
    controller = DriveController(InProcessPolicy.wrap(policy), safety, GO, max_frame_age_s=60.0)
    stop = threading.Event()
    worker = threading.Thread(target=controller.run, args=(stop, 1000.0))
    worker.start()
    try:
        for f in frames[:5]:
            done = controller.ticks + 1
            controller.on_frame(f)
            for _ in range(2000):  # wait for the worker to take it (bounded, no timing assertion)
                if controller.ticks >= done:
                    break
                threading.Event().wait(0.005)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive() and controller.ticks == 5 and controller.errors == 0


def test_server_death_lets_the_watchdog_stop(tiny_checkpoint, tiny_model_dir, frames, tmp_path):
    """The fast version of test_graph.py's slow server-death test: a real served policy, killed; no ROS graph, fake clock."""
    import importlib.util
    import sys
    from pathlib import Path

    from robovlms_mobile.runtime.client import RemotePolicy

    spec = importlib.util.spec_from_file_location("_serve_server_process", Path(__file__).parents[1] / "serve" / "server_process.py")
    sp = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = sp  # its dataclass looks itself up there
    spec.loader.exec_module(sp)
    server = sp.start_server(tiny_checkpoint, tiny_model_dir, tmp_path / "server.log")
    clock = FakeClock()
    safety = SafetyLayer(SafetyConfig(max_linear_x=0.05, max_linear_y=1.0, deadline_s=0.5, max_accel=None), clock)
    source = RemotePolicy.connect(server.url, timeout=5.0)
    controller = DriveController(source, safety, GO, max_frame_age_s=0.3, clock=clock)
    try:
        controller.on_frame(frames[0])
        assert controller.tick() and controller.command().state == OK
        server.process.kill()
        server.process.wait()
        clock.t += 0.1
        controller.on_frame(frames[1])
        assert not controller.tick()  # the dead server is an error for the watchdog, not an exception
        assert controller.errors == 1 and controller.last_error
        clock.t += 0.45  # 0.55 s after the last good frame: past the 0.5 s deadline
        assert controller.command()[:3] == (0.0, 0.0, STALE)
        clock.t += 1.0
        controller.on_frame(frames[2])
        assert not controller.tick() and controller.command()[:3] == (0.0, 0.0, STALE)  # and zeros keep coming
    finally:
        source.close()
        sp.stop_server(server)


def test_the_action_log_gets_answers_estops_and_published_state_changes(rig, frames):
    """What the graph tests wait on: e-stop messages with their epoch and barrier, each published state change once."""
    controller, _, clock = rig
    log: list[dict] = []
    controller.on_action = log.append
    controller.on_frame(frames[0])
    assert controller.tick()
    (answer,) = log
    assert answer["accepted"] and answer["epoch"] == 0 and answer["answered"] == clock.t
    command = controller.command()
    for seq in (1, 2):
        controller.on_published(command, seq)  # ok twice: one change
    clock.t += 1.0
    controller.on_estop(True)
    controller.on_published(controller.command(), 3)
    assert log[1:] == [{"event": "state", "state": OK, "seq": 1, "at": 50.0},
                       {"event": "estop", "engaged": True, "epoch": 1, "barrier": 51.0},
                       {"event": "state", "state": ESTOP, "seq": 3, "at": 51.0}]
