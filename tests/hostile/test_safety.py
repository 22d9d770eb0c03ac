"""Hostile inputs to the safety layer (issue 11 item 2): each case named; none may move the robot."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robovlms_mobile.ros.controller import DriveController
from robovlms_mobile.ros.safety import ESTOP, IDLE, OK, STALE, SafetyConfig, SafetyLayer


class Clock:
    """A settable clock (seconds)."""

    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def layer(**overrides) -> tuple[SafetyLayer, Clock]:
    cfg = {"max_linear_x": 1.15, "max_linear_y": 1.15, "deadline_s": 0.5, "max_accel": 2.0, "max_rate_hz": 10.0,
           **overrides}
    clock = Clock()
    return SafetyLayer(SafetyConfig(**cfg), clock), clock


BAD_VELOCITIES = {
    "strings": ["1.0", "0"],
    "string_pair": "10",
    "bools": [True, False],
    "numpy_bools": np.array([True, False]),
    "nan": [math.nan, 0.0],
    "inf": [0.0, math.inf],
    "minus_inf": [-math.inf, 0.0],
    "numpy_nan": np.array([np.nan, 0.0]),
    "one_value": [1.0],
    "three_values": [1.0, 0.0, 0.0],
    "none": None,
    "dict": {"linear_x": 1.0, "linear_y": 0.0},
    "nested": [[1.0], [0.0]],
    "bytes": b"\x01\x00",
    "complex": [1j, 0.0],
    "number_not_list": 1.0,
}


@pytest.mark.parametrize("velocity", list(BAD_VELOCITIES.values()), ids=list(BAD_VELOCITIES))
def test_non_numeric_or_non_finite_velocity_is_rejected(velocity):
    safety, clock = layer()
    assert not safety.submit(velocity)
    assert safety.rejected == 1
    assert safety.command()[:3] == (0.0, 0.0, IDLE)


BAD_STAMPS = {"nan": math.nan, "inf": math.inf, "minus_inf": -math.inf, "string": "100.0", "bool": True,
              "list": [100.0]}


@pytest.mark.parametrize("stamp", list(BAD_STAMPS.values()), ids=list(BAD_STAMPS))
def test_bad_stamp_is_rejected_and_cannot_disable_the_watchdog(stamp):
    safety, clock = layer(max_accel=None)
    assert safety.submit([0.5, 0.0])
    assert not safety.submit([1.0, 0.0], stamp=stamp)
    assert safety.rejected == 1
    clock.t += 0.6
    assert safety.command()[:3] == (0.0, 0.0, STALE)  # the watchdog still fires on the good action


def test_stamp_from_the_future_cannot_extend_the_deadline():
    safety, clock = layer(max_accel=None)
    assert not safety.submit([1.0, 0.0], stamp=clock.t + 1e9)
    assert safety.command()[:3] == (0.0, 0.0, IDLE)


def test_action_from_a_frame_before_the_estop_is_not_published_after_release():
    safety, clock = layer(max_accel=None)
    captured = clock.t  # a frame arrives; the model takes a while
    epoch = safety.epoch
    clock.t += 0.05
    safety.set_estop(True)
    clock.t += 0.05
    safety.set_estop(False)
    clock.t += 0.05
    assert not safety.submit([1.0, 0.0], stamp=captured)  # by stamp
    assert not safety.submit([1.0, 0.0], stamp=clock.t, epoch=epoch)  # by epoch, even with a fresh-looking stamp
    assert safety.refused_stale == 2
    assert safety.command()[:3] == (0.0, 0.0, IDLE)


def test_action_from_a_frame_during_the_estop_is_not_published_after_release():
    safety, clock = layer(max_accel=None)
    safety.set_estop(True)
    clock.t += 0.1
    during = clock.t
    clock.t += 0.1
    safety.set_estop(False)
    assert not safety.submit([1.0, 0.0], stamp=during)
    clock.t += 0.01
    assert safety.submit([0.2, 0.0], stamp=clock.t)  # a frame after the release drives again
    assert safety.command()[:3] == (0.2, 0.0, OK)


def test_controller_in_flight_tick_across_estop_and_release_is_refused():
    clock = Clock()
    safety = SafetyLayer(SafetyConfig(max_accel=None), clock)

    class SlowSource:
        """The model answers 1 m/s; while it runs, the operator presses and releases the e-stop."""

        def act(self, frame, instruction):
            safety.set_estop(True)
            clock.t += 0.01
            safety.set_estop(False)
            return np.array([1.0, 0.0])

        def reset(self):
            pass

    controller = DriveController(SlowSource(), safety, "go", clock=clock)
    controller.on_frame(np.zeros((4, 4, 3), np.uint8))
    assert not controller.tick()
    assert safety.command()[:3] == (0.0, 0.0, IDLE)


def test_policy_stop_is_published_at_once_not_ramped():
    safety, clock = layer(max_accel=1.0)
    for _ in range(30):  # ramp up to 1 m/s
        safety.submit([1.0, 0.0])
        safety.command()
        clock.t += 0.1
    assert safety.command().linear_x == pytest.approx(1.0)
    clock.t += 0.01  # inside the publication period too
    safety.submit([0.0, 0.0])
    assert safety.command()[:3] == (0.0, 0.0, OK)


@pytest.mark.parametrize("step_back", [0.05, 10.0, 1e6], ids=["50ms", "10s", "1e6s"])
def test_clock_stepping_back_ends_in_zero_not_silence(step_back):
    safety, clock = layer(max_accel=None)
    safety.submit([0.5, 0.0])
    assert safety.command().linear_x == 0.5
    clock.t -= step_back
    cmd = safety.command()
    assert cmd is not None and (cmd.linear_x, cmd.linear_y) == (0.0, 0.0)
    assert safety.clock_faults == 1
    for _ in range(3):  # zeros keep coming at the rate
        clock.t += 0.1
        assert safety.command()[:2] == (0.0, 0.0)
    safety.submit([0.3, 0.0])  # a fresh action on the new time base drives again
    clock.t += 0.1
    assert safety.command()[:3] == (0.3, 0.0, OK)


@pytest.mark.parametrize("reading", [math.nan, math.inf], ids=["nan", "inf"])
def test_non_finite_clock_publishes_zero(reading):
    safety, clock = layer(max_accel=None)
    safety.submit([0.5, 0.0])
    safety.command()
    good = clock.t
    clock.t = reading
    assert safety.command()[:2] == (0.0, 0.0)
    assert not safety.submit([0.5, 0.0])
    clock.t = good + 0.1
    assert safety.command()[:3] == (0.0, 0.0, IDLE)  # the action before the fault is gone


def test_estop_cannot_be_bypassed_by_submitting_while_engaged():
    safety, clock = layer()
    safety.set_estop(True)
    for _ in range(5):
        assert not safety.submit([1.0, 0.0])
        clock.t += 0.1
        assert safety.command()[:3] == (0.0, 0.0, ESTOP)


BAD_CONFIG = {
    "bool_speed": {"max_linear_x": True},
    "string_speed": {"max_linear_y": "1.0"},
    "nan_deadline": {"deadline_s": math.nan},
    "inf_speed": {"max_linear_x": math.inf},
    "negative_rate": {"max_rate_hz": -1.0},
    "nan_accel": {"max_accel": math.nan},
    "string_accel": {"max_accel": "2"},
}


@pytest.mark.parametrize("overrides", list(BAD_CONFIG.values()), ids=list(BAD_CONFIG))
def test_bad_safety_config_is_refused(overrides):
    with pytest.raises(ValueError, match=next(iter(overrides))):
        SafetyConfig(**overrides)
