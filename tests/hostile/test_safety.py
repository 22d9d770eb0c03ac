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


# ---- the queue of asynchronous execution (issue 20 item 2) ------------------------------------
STEP = 0.4
N = 10


def async_rig(latency: float, *, on_query=None, chunk=None):
    """A controller executing chunks asynchronously; its source answers after `latency` s of controller time."""
    from robovlms_mobile.runtime.executor import AsyncExecutor

    clock = Clock()
    safety = SafetyLayer(SafetyConfig(max_accel=None, max_horizon_s=2 * N * STEP), clock)

    class LateSource:
        """Answers a (N, 2) chunk of 0.5 m/s forward `latency` seconds after the query started."""

        def predict_chunk(self, frame, instruction):
            if on_query is not None:
                on_query(safety, clock)
            clock.t += latency
            return np.tile([0.5, 0.0], (N, 1)) if chunk is None else chunk

        def reset(self):
            pass

    controller = DriveController(LateSource(), safety, "go", clock=clock, max_frame_age_s=1.0,
                                 executor=AsyncExecutor(N), step_s=STEP)
    return controller, safety, clock


FRAME = np.zeros((4, 4, 3), np.uint8)


def test_async_answer_is_executed_at_its_scheduled_steps_then_zero_when_the_queue_runs_dry():
    controller, safety, clock = async_rig(latency=1.0)  # 2.5 steps late, but the robot stood: nothing dropped
    controller.on_frame(FRAME)
    assert controller.tick()
    assert safety.command()[:3] == (0.5, 0.0, OK)
    plan = actions_of(controller)
    assert len(plan) == N and plan[0][0] <= clock.t < plan[0][0] + STEP
    clock.t += N * STEP  # past the end of the chunk: nothing was queued beyond it
    assert safety.command()[:3] == (0.0, 0.0, "dry")


def actions_of(controller):
    """The executor's queue from now on, as (time, velocity)."""
    now = controller.step_of(controller.clock())
    return [(controller._origin + s * STEP, v) for s, v in controller.executor.plan(now)]


def test_async_queue_runs_dry_to_zero_while_a_late_answer_is_pending():
    seen = []

    def check_while_pending(safety, clock):
        if controller.ticks:  # the second query: the first plan ends while it is out
            clock.t += N * STEP
            seen.append(safety.command())

    controller, safety, clock = async_rig(latency=0.1, on_query=check_while_pending)
    controller.on_frame(FRAME)
    assert controller.tick()
    clock.t += STEP
    controller.on_frame(FRAME)
    controller.tick()
    assert seen and seen[0][:3] == (0.0, 0.0, "dry")


def test_async_answer_for_an_old_episode_is_refused():
    def estop_during_query(safety, clock):
        controller.on_estop(True)
        clock.t += 0.01
        controller.on_estop(False)

    controller, safety, clock = async_rig(latency=0.1, on_query=estop_during_query)
    controller.on_frame(FRAME)
    assert not controller.tick()
    assert controller.executor.refused["old_episode"] == 1
    assert safety.command()[:3] == (0.0, 0.0, IDLE)


def test_async_delay_larger_than_the_chunk_is_refused():
    controller, safety, clock = async_rig(latency=N * STEP + 0.5)  # its plan would end 8.5 s after its frame
    controller.on_frame(FRAME)
    assert not controller.tick()
    assert safety.rejected == 1 and safety.command()[:3] == (0.0, 0.0, IDLE)


def test_async_malformed_chunk_drops_the_plan_at_once():
    controller, safety, clock = async_rig(latency=0.1)
    controller.on_frame(FRAME)
    assert controller.tick() and safety.command().state == OK
    controller.source.predict_chunk = lambda frame, instruction: np.full((N, 2), np.nan)
    clock.t += STEP  # one step on: the queue is under its threshold, the next query goes out
    controller.on_frame(FRAME)
    assert not controller.tick() and controller.errors == 1
    assert safety.command()[:2] == (0.0, 0.0)


def test_async_estop_clears_the_queue_at_once():
    controller, safety, clock = async_rig(latency=0.1)
    controller.on_frame(FRAME)
    assert controller.tick() and safety.command().state == OK
    controller.on_estop(True)
    assert safety.command()[:3] == (0.0, 0.0, ESTOP)
    controller.on_estop(False)
    clock.t += 0.1  # past the publication rate limit
    assert safety.command()[:3] == (0.0, 0.0, IDLE)  # the old plan does not come back


def plan(start: float, n: int = N, v=(0.5, 0.0)):
    return [(start + i * STEP, list(v)) for i in range(n)]


def test_plan_arriving_after_its_horizon_is_refused():
    safety, clock = layer(max_accel=None)
    assert not safety.submit_plan(plan(clock.t - N * STEP), stamp=clock.t - N * STEP, step_s=STEP)
    assert safety.refused_late == 1 and safety.command()[:3] == (0.0, 0.0, IDLE)


def test_out_of_order_plans_keep_the_newer_frame():
    safety, clock = layer(max_accel=None)
    assert safety.submit_plan(plan(clock.t - 0.4, v=(0.3, 0.0)), stamp=clock.t - 0.4, step_s=STEP)
    assert not safety.submit_plan(plan(clock.t - 0.8, v=(0.9, 0.0)), stamp=clock.t - 0.8, step_s=STEP)
    assert safety.command()[:2] == (0.3, 0.0)


BAD_PLANS = {
    "empty": [],
    "not_a_list": "plan",
    "times_not_increasing": [(100.0, [0.5, 0.0]), (100.0, [0.5, 0.0])],
    "closer_than_a_step": [(100.0, [0.5, 0.0]), (100.1, [0.5, 0.0])],
    "nan_time": [(math.nan, [0.5, 0.0])],
    "bad_velocity": [(100.0, [math.inf, 0.0])],
    "string_velocity": [(100.0, ["1", "0"])],
    "no_pairs": [100.0, 100.4],
    "beyond_the_max_horizon": plan(100.0, n=2 * N + 1),
    "before_its_frame": plan(99.0, n=2),
}


@pytest.mark.parametrize("bad", list(BAD_PLANS.values()), ids=list(BAD_PLANS))
def test_malformed_plan_is_rejected_and_moves_nothing(bad):
    safety, clock = layer(max_accel=None, max_horizon_s=2 * N * STEP)
    assert not safety.submit_plan(bad, stamp=100.0, step_s=STEP)
    assert safety.command()[:3] == (0.0, 0.0, IDLE)


def test_planned_action_is_held_no_longer_than_the_deadline():
    safety, clock = layer(max_accel=None, deadline_s=0.3)
    sparse = [(100.0, [0.5, 0.0]), (100.8, [0.5, 0.0])]  # a gap of one step between them
    assert safety.submit_plan(sparse, stamp=100.0, step_s=STEP)
    assert safety.command().state == OK
    clock.t += 0.35  # past the slot (min of step 0.4 and deadline 0.3)
    assert safety.command()[:3] == (0.0, 0.0, "dry")
    clock.t += 0.5  # in the next action's slot
    assert safety.command().state == OK


def test_async_frame_from_before_the_release_is_not_sent():
    controller, safety, clock = async_rig(latency=0.1)
    controller.on_frame(FRAME)  # captured before the e-stop
    clock.t += 0.05
    controller.on_estop(True)
    clock.t += 0.05
    controller.on_estop(False)
    assert not controller.tick() and controller.executor.queries == 0
    clock.t += 0.1
    assert safety.command()[:3] == (0.0, 0.0, IDLE)


def test_async_plan_refused_by_the_safety_layer_leaves_nothing_queued():
    controller, safety, clock = async_rig(latency=0.1, chunk=np.tile([0.5, 0.0], (N, 1)))
    real_submit = safety.submit_plan
    safety.submit_plan = lambda *a, **k: False  # e.g. a barrier the executor does not know about
    controller.on_frame(FRAME)
    assert not controller.tick()
    assert controller.executor.plan(0) == []  # a later crossfade or ensemble cannot blend the refused chunk in
    safety.submit_plan = real_submit


def test_async_queries_carry_the_actions_committed_since_their_frame():
    """A source whose head takes committed actions gets the plan of the next min(k, last delay) steps from its frame."""
    from robovlms_mobile.runtime.executor import AsyncExecutor

    clock = Clock()
    safety = SafetyLayer(SafetyConfig(max_accel=None, max_horizon_s=2 * N * STEP), clock)
    told = []

    class CommittedSource:
        committed_steps = 3

        def predict_chunk(self, frame, instruction, committed):
            told.append(np.asarray(committed))
            clock.t += 2.2 * STEP  # every answer arrives in the third step after its frame
            return np.stack([np.linspace(0.1, 1.0, N), np.full(N, 0.05 * len(told))], axis=1)

        def reset(self):
            pass

    controller = DriveController(CommittedSource(), safety, "go", clock=clock, max_frame_age_s=2.0,
                                 executor=AsyncExecutor(N), step_s=STEP, committed_steps=3)
    controller.on_frame(FRAME)
    assert controller.tick()
    clock.t += STEP  # one queued action ran: the queue is under its threshold
    frame_step = controller.step_of(clock.t)
    expected = controller.executor.committed(frame_step, 2)  # what runs from the next frame on: the last delay was 2
    controller.on_frame(FRAME)
    assert controller.tick()
    assert told[0].shape == (0, 2)  # the first query: nothing committed, no delay measured yet
    np.testing.assert_allclose(told[1], expected)
    assert len(told[1]) == 2 and np.allclose(told[1][:, 1], 0.05)  # from the first answer's chunk
