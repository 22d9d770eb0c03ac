"""DriveController: newest camera frame -> action source -> safety layer, on a worker thread.

The ROS node only forwards callbacks here and publishes `command()`; everything that decides
what the wheels get is in this module and safety.py. One control tick per `tick()`: the newest
frame not yet used (and not older than `max_frame_age_s`) goes to the source, and its velocity
reaches the safety layer stamped with the frame's arrival time and the e-stop epoch read before
the source ran, so an answer to a frame from before an e-stop is refused after the release. A
failing or slow source submits nothing, so the watchdog stops the robot.

Asynchronous execution (an `AsyncExecutor` given): the tick asks the source for a whole chunk
on the newest frame whenever the executor's queue is under its threshold, while the safety
layer keeps executing the plan already queued. Control steps are `step_s` seconds on the
controller clock; the answer is aligned by the steps that passed since its frame, merged, and
the queue goes to the safety layer as a plan with every action's scheduled time. With
`committed_steps` k > 0 (a head trained with committed actions) each query carries the
executed and queued actions of the next min(k, last measured delay) steps from its frame. A failing
source drops the plan (zero at once); an e-stop, its release or a new instruction starts a new
executor episode, so no answer to an earlier query is executed after it.

The action log (`on_action`) gets every source answer and, as records with an "event" key, each
e-stop message taken (with the epoch and barrier after it) and each change of the published state with the number
of the /cmd_vel message that first carried it (`on_published`), so a test or an operator can tell
from the messages themselves when the bridge changed what it publishes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from robovlms_mobile.ros.safety import Command, SafetyLayer
from robovlms_mobile.runtime.executor import AsyncExecutor
from robovlms_mobile.runtime.protocol import Policy
from robovlms_mobile.task import check_instruction

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """A camera frame (RGB array or JPEG/PNG bytes) and when it arrived (controller clock)."""

    image: np.ndarray | bytes
    stamp: float


class DriveController:
    """Ticks the policy on the newest frame and feeds the safety layer; thread-safe inputs."""

    def __init__(self, source: Policy, safety: SafetyLayer, instruction: str, *,
                 max_frame_age_s: float = 0.5, clock: Callable[[], float] | None = None,
                 on_action: Callable[[dict[str, Any]], None] | None = None,
                 executor: AsyncExecutor | None = None, step_s: float | None = None, committed_steps: int = 0):
        check_instruction(instruction, where="--instruction")
        if executor is not None and not (step_s and step_s > 0 and math.isfinite(step_s)):
            raise ValueError(f"asynchronous execution needs a step length in seconds > 0, got {step_s!r}")
        self.executor, self.step_s = executor, step_s
        self.committed_steps = committed_steps if executor is not None else 0
        self._last_delay = 0  # steps the newest answer took: what the next query is expected to take
        self.source, self.safety = source, safety
        self.clock = clock or safety.clock
        self.max_frame_age_s = max_frame_age_s
        self.on_action = on_action  # the action log: every source answer, e-stop and published-state changes
        self._published_state: str | None = None
        self._instruction = instruction
        self._frame: Frame | None = None
        self._cond = threading.Condition()
        self.ticks = self.errors = self.skipped_stale = 0
        self.last_error: str | None = None
        self._origin = self.clock()  # step k of the executor starts at origin + k * step_s
        self._episode_start = -math.inf  # async: frames captured before this belong to an earlier episode

    # ---- inputs (ROS callbacks) ------------------------------------------------------------
    def on_frame(self, image: np.ndarray | bytes, stamp: float | None = None) -> None:
        """A new camera frame (captured at `stamp`, controller clock; default now); replaces any frame not yet used."""
        with self._cond:
            self._frame = Frame(image, self.clock() if stamp is None else stamp)
            self._cond.notify_all()

    def on_estop(self, engaged: bool) -> None:
        """E-stop topic: True engages (latched), False releases; a release also starts a new episode."""
        self.safety.set_estop(engaged)
        if self.on_action is not None:
            self.on_action({"event": "estop", "engaged": engaged, "epoch": self.safety.epoch, "barrier": self.safety.barrier})
        if self.executor is not None:
            self.executor.reset()  # an answer to a query sent before this is for an earlier episode
            self._episode_start = self.clock()
        if not engaged:
            self._reset_source()

    def set_instruction(self, instruction: str) -> None:
        """A new command for the robot: a new episode. Blank is ignored; ValueError if over the length limit."""
        if not check_instruction(instruction, where="instruction topic", allow_empty=True):
            return
        if instruction != self._instruction:
            self._instruction = instruction
            self._reset_source()

    @property
    def instruction(self) -> str:
        """The current instruction."""
        return self._instruction

    # ---- ticking ---------------------------------------------------------------------------
    def tick(self) -> bool:
        """Run the source on the newest unused frame; True when an action reached the safety layer."""
        if self.executor is not None:
            return self._tick_async()
        with self._cond:
            frame, self._frame = self._frame, None
        epoch = self.safety.epoch  # before the check: an e-stop from here on makes this tick's action stale
        if frame is None or self.safety.estop:
            return False
        if self.clock() - frame.stamp > self.max_frame_age_s:
            self.skipped_stale += 1
            return False
        try:
            velocity = self.source.act(frame.image, self._instruction)
        except Exception as exc:  # noqa: BLE001 - network, server, model errors: the watchdog handles the stop
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("action source failed: %s", self.last_error)
            return False
        answered = self.clock()  # before the submit: an accepted answer was answered before any later e-stop
        self.ticks += 1
        accepted = self.safety.submit(velocity, stamp=frame.stamp, epoch=epoch)
        if self.on_action is not None:
            self.on_action({"stamp": frame.stamp, "answered": answered, "epoch": epoch, "velocity": _plain(velocity),
                            "accepted": accepted})
        return accepted

    def step_of(self, t: float) -> int:
        """The executor's control step at controller time `t`."""
        return math.floor((t - self._origin) / self.step_s)

    def needs_query(self) -> bool:
        """Asynchronous: whether the executor wants a query now."""
        return self.executor is not None and self.executor.needs_query(self.step_of(self.clock()))

    def _tick_async(self) -> bool:
        """One chunk query on the newest unused frame if the queue needs one; True when a plan reached the safety layer."""
        executor = self.executor
        if self.safety.estop or not executor.needs_query(self.step_of(self.clock())):
            return False
        with self._cond:
            frame, self._frame = self._frame, None
        if frame is None or frame.stamp < self._episode_start:  # a frame from before an e-stop or its release
            return False
        if self.clock() - frame.stamp > self.max_frame_age_s:
            self.skipped_stale += 1
            return False
        epoch = self.safety.epoch  # an e-stop from here on makes this answer stale
        ticket = executor.begin(self.step_of(frame.stamp))
        try:
            if self.committed_steps:
                committed = executor.committed(ticket.frame_step, min(self.committed_steps, self._last_delay))
                chunk = self.source.predict_chunk(frame.image, self._instruction, committed)
            else:
                chunk = self.source.predict_chunk(frame.image, self._instruction)
            chunk = np.asarray(chunk, dtype=np.float64)
            answered = self.clock()
            self._last_delay = max(0, self.step_of(answered) - ticket.frame_step)
            merged = executor.receive(ticket, chunk, self.step_of(answered))
        except Exception as exc:  # noqa: BLE001 - network, server, model, malformed chunk: stop now
            executor.fail(ticket)
            executor.clear()
            self.safety.drop_plan()
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("action source failed: %s", self.last_error)
            return False
        self.ticks += 1
        now_step = self.step_of(answered)
        plan = [(self._origin + s * self.step_s, v) for s, v in executor.plan(now_step)] if merged else []
        accepted = bool(plan) and self.safety.submit_plan(plan, stamp=frame.stamp, step_s=self.step_s, epoch=epoch)
        if plan and not accepted:  # the safety layer refused what the queue now holds: no later merge may build on it
            executor.clear()
        if self.on_action is not None:
            self.on_action({"stamp": frame.stamp, "answered": answered, "epoch": epoch, "velocity": _plain(chunk[0]),
                            "delay_steps": now_step - ticket.frame_step, "planned": len(plan),
                            "plan": [[t, *_plain(v)] for t, v in plan], "accepted": accepted})
        return accepted

    def command(self) -> Command | None:
        """What to publish now (None: the rate limit says wait)."""
        return self.safety.command()

    def on_published(self, command: Command, seq: int) -> None:
        """The node published `command` as its `seq`-th /cmd_vel message (1, 2, ...): a change of state is logged."""
        if command.state != self._published_state:
            self._published_state = command.state
            if self.on_action is not None:
                self.on_action({"event": "state", "state": command.state, "seq": seq, "at": self.clock()})

    def run(self, stop: threading.Event, tick_hz: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Tick at most `tick_hz` times a second until `stop` is set, waiting for frames in between."""
        period = 1.0 / tick_hz
        while not stop.is_set():
            started = time.monotonic()
            with self._cond:
                if self._frame is None:
                    self._cond.wait(timeout=period)
                has_frame = self._frame is not None
            if stop.is_set():
                break
            if self.executor is not None:
                # asynchronous: the safety layer executes the plan; query as soon as the queue asks for one
                if not (has_frame and self.tick()):
                    sleep(min(period, self.step_s) / 4)
                continue
            if has_frame:
                self.tick()  # success or not: a failing server is not retried faster than tick_hz
                rest = period - (time.monotonic() - started)
                if rest > 0:
                    sleep(rest)

    def _reset_source(self) -> None:
        if self.executor is not None:
            self.executor.reset()
            self.safety.drop_plan()
            self._episode_start = self.clock()
        try:
            self.source.reset()
        except Exception as exc:  # noqa: BLE001 - the next tick retries through the source
            self.errors += 1
            self.last_error = f"reset failed: {type(exc).__name__}: {exc}"
            log.warning(self.last_error)

    def stats(self) -> dict[str, Any]:
        """Counters for logs and diagnostics."""
        out = {"ticks": self.ticks, "errors": self.errors, "skipped_stale": self.skipped_stale,
               "rejected": self.safety.rejected, "state": self.safety.state(), "last_error": self.last_error}
        if self.executor is not None:
            out.update(refused=dict(self.executor.refused), refused_late=self.safety.refused_late)
        return out


def _plain(velocity: Any) -> Any:
    """A JSON-safe copy of what the source answered (numbers as floats, anything else as its repr)."""
    try:
        return [float(v) for v in velocity]
    except (TypeError, ValueError):
        return repr(velocity)
