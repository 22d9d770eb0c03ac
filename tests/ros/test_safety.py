"""SafetyLayer with a fake clock: clamp, watchdog, e-stop, acceleration and publication rate limits."""

from __future__ import annotations

import math

import pytest

from robovlms_mobile.ros.safety import ESTOP, IDLE, OK, STALE, SafetyConfig, SafetyLayer, clamp_velocity


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def layer(**overrides) -> tuple[SafetyLayer, FakeClock]:
    cfg = {"max_linear_x": 1.0, "max_linear_y": 0.5, "deadline_s": 0.5, "max_accel": None, "max_rate_hz": 10.0, **overrides}
    clock = FakeClock()
    return SafetyLayer(SafetyConfig(**cfg), clock), clock


def test_idle_until_first_action():
    safety, clock = layer()
    cmd = safety.command()
    assert (cmd.linear_x, cmd.linear_y, cmd.state) == (0.0, 0.0, IDLE)


def test_action_passes_within_limits():
    safety, clock = layer()
    assert safety.submit([0.4, -0.2])
    cmd = safety.command()
    assert (cmd.linear_x, cmd.linear_y, cmd.state, cmd.clamped) == (0.4, -0.2, OK, False)


@pytest.mark.parametrize("action, expected", [
    ((2.0, 0.0), (1.0, 0.0)),
    ((-3.0, 0.0), (-1.0, 0.0)),
    ((0.0, -1.15), (0.0, -0.5)),
    ((1.15, 1.15), (0.5, 0.5)),  # a diagonal stays a diagonal
    ((2.0, 0.5), (1.0, 0.25)),
])
def test_clamp_scales_the_vector_and_keeps_direction(action, expected):
    safety, _ = layer()
    safety.submit(action)
    cmd = safety.command()
    assert cmd.clamped and cmd.state == OK
    assert (cmd.linear_x, cmd.linear_y) == pytest.approx(expected)
    assert clamp_velocity(0.0, 0.0, 1.0, 1.0) == ((0.0, 0.0), False)


def test_watchdog_zeroes_after_deadline_and_recovers_on_fresh_action():
    safety, clock = layer()
    safety.submit([0.5, 0.0])
    assert safety.command().state == OK
    clock.advance(0.5)  # exactly at the deadline: still fresh
    assert safety.command().linear_x == 0.5
    clock.advance(0.01)
    cmd = safety.command()  # no rate-limit wait: a stop is published at once
    assert (cmd.linear_x, cmd.linear_y, cmd.state) == (0.0, 0.0, STALE)
    clock.advance(0.1)
    assert safety.command().state == STALE
    safety.submit([0.3, 0.1])
    clock.advance(0.1)
    assert safety.command()[:3] == (0.3, 0.1, OK)


def test_watchdog_uses_the_frame_stamp():
    safety, clock = layer()
    safety.submit([0.5, 0.0], stamp=clock.t - 0.6)  # a slow model answered about a 0.6 s old frame
    assert safety.command().state == STALE
    safety.submit([0.5, 0.0], stamp=clock.t + 10)  # a stamp from the future counts as now, not later
    clock.advance(0.51)
    assert safety.command().state == STALE


def test_answer_to_an_older_frame_does_not_replace_a_newer_one():
    safety, clock = layer()
    assert safety.submit([0.2, 0.0], stamp=clock.t)
    assert not safety.submit([0.9, 0.0], stamp=clock.t - 0.1)
    assert safety.command().linear_x == 0.2


@pytest.mark.parametrize("bad", [[math.nan, 0.0], [0.0, math.inf], [1.0], ["fast", 0.0], None])
def test_malformed_actions_are_ignored(bad):
    safety, clock = layer()
    safety.submit([0.2, 0.0])
    assert not safety.submit(bad)
    assert safety.rejected == 1
    assert safety.command().linear_x == 0.2  # the last good action still holds until its deadline
    clock.advance(0.6)
    assert safety.command().state == STALE


def test_estop_is_latched_and_needs_a_fresh_action_after_release():
    safety, clock = layer()
    safety.submit([0.5, 0.2])
    assert safety.command().state == OK
    clock.advance(0.01)
    safety.set_estop(True)
    cmd = safety.command()  # immediately, despite the publication rate limit
    assert (cmd.linear_x, cmd.linear_y, cmd.state) == (0.0, 0.0, ESTOP) and safety.estop
    assert not safety.submit([0.5, 0.2])  # refused while engaged
    clock.advance(0.1)
    assert safety.command().state == ESTOP
    safety.set_estop(False)
    clock.advance(0.1)
    assert safety.command()[:3] == (0.0, 0.0, IDLE)  # the pre-stop action is not replayed
    safety.submit([0.1, 0.0])
    clock.advance(0.1)
    assert safety.command()[:3] == (0.1, 0.0, OK)
    safety.set_estop(False)  # releasing when not engaged keeps the current action
    assert safety.state() == OK


def test_publication_rate_limit():
    safety, clock = layer(max_rate_hz=10.0)
    safety.submit([0.2, 0.0])
    assert safety.command() is not None
    clock.advance(0.05)
    safety.submit([0.3, 0.0])
    assert safety.command() is None  # 50 ms < 100 ms
    clock.advance(0.05)
    assert safety.command().linear_x == 0.3
    # zeros keep coming at the rate (the base's own watchdog stays fed), but not faster
    clock.advance(0.6)
    assert safety.command().state == STALE
    clock.advance(0.05)
    assert safety.command() is None


def test_timer_at_the_rate_limit_is_not_skipped_for_jitter():
    safety, clock = layer(max_rate_hz=10.0)
    published = 0
    for i in range(20):
        safety.submit([0.2, 0.0])
        published += safety.command() is not None
        clock.advance(0.1 + (0.003 if i % 2 else -0.003))  # a 10 Hz timer with +-3 ms jitter
    assert published == 20


def test_acceleration_limit_ramps_up_but_stops_at_once():
    safety, clock = layer(max_accel=1.0, max_rate_hz=10.0)
    safety.submit([1.0, 0.0])
    first = safety.command()  # first command: one publication period of acceleration
    assert first.limited and first.linear_x == pytest.approx(0.1)
    xs = [first.linear_x]
    for _ in range(12):
        clock.advance(0.1)
        safety.submit([1.0, 0.0])
        xs.append(safety.command().linear_x)
    assert xs[:10] == pytest.approx([0.1 * (i + 1) for i in range(10)])
    assert xs[-1] == 1.0
    safety.set_estop(True)
    assert safety.command()[:3] == (0.0, 0.0, ESTOP)  # no ramp down on a stop


def test_acceleration_limit_is_on_the_vector_and_bounded_after_a_pause():
    safety, clock = layer(max_accel=1.0, max_rate_hz=10.0, max_linear_y=1.0, deadline_s=0.5)
    safety.submit([0.3, 0.4])  # |v| = 0.5
    cmd = safety.command()
    assert math.hypot(cmd.linear_x, cmd.linear_y) == pytest.approx(0.1)
    assert cmd.linear_y / cmd.linear_x == pytest.approx(0.4 / 0.3)
    clock.advance(0.4)  # a long gap allows at most deadline_s * max_accel = 0.4 more (here: up to the target)
    safety.submit([0.3, 0.4])
    assert safety.command()[:2] == pytest.approx((0.3, 0.4))


@pytest.mark.parametrize("field, value", [("max_linear_x", 0), ("deadline_s", -1), ("max_rate_hz", math.nan),
                                          ("max_accel", 0.0), ("max_linear_y", math.inf), ("stop_speed", -0.1),
                                          ("stop_speed", math.nan)])
def test_invalid_config_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        SafetyConfig(**{field: value})


def ramp_up(safety, clock, speed: float = 0.8, ticks: int = 25) -> None:
    """Drive at `speed` for `ticks` 0.1 s ticks: the acceleration limit has reached it by then."""
    for _ in range(ticks):
        safety.submit([speed, 0.0])
        safety.command()
        clock.advance(0.1)


def test_policy_zero_skips_the_ramp_and_the_rate_limit():
    safety, clock = layer(max_accel=0.5, max_rate_hz=10.0)
    ramp_up(safety, clock)
    assert safety.command().linear_x == pytest.approx(0.8)
    clock.advance(0.02)
    safety.submit([0.0, 0.0])
    assert safety.command()[:3] == (0.0, 0.0, OK)  # at once: no 1.6 s ramp down, no 100 ms wait


def test_estop_epoch_refuses_answers_computed_across_it():
    safety, clock = layer()
    epoch = safety.epoch
    safety.set_estop(True)
    safety.set_estop(False)
    assert safety.epoch == epoch + 2
    clock.advance(0.1)
    assert not safety.submit([0.4, 0.0], epoch=epoch) and safety.refused_stale == 1
    assert safety.submit([0.4, 0.0], epoch=safety.epoch)


def test_below_stop_speed_is_a_stop_at_once():
    safety, clock = layer(max_accel=0.5, stop_speed=0.1)
    ramp_up(safety, clock)
    clock.advance(0.02)
    safety.submit([0.09, -0.05])  # both axes below 0.1 m/s: the policy means stop
    assert safety.command()[:3] == (0.0, 0.0, OK)
    clock.advance(0.1)
    safety.submit([0.0, 0.15])  # one axis at or above it: motion (ramped up again)
    assert safety.command().linear_y > 0.0
