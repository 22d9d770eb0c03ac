"""DriveController: newest camera frame -> action source -> safety layer, on a worker thread.

The ROS node only forwards callbacks here and publishes `command()`; everything that decides
what the wheels get is in this module and safety.py. One control tick per `tick()`: the newest
frame not yet used (and not older than `max_frame_age_s`) goes to the source, and its velocity
reaches the safety layer stamped with the frame's arrival time and the e-stop epoch read before
the source ran, so an answer to a frame from before an e-stop is refused after the release. A
failing or slow source submits nothing, so the watchdog stops the robot.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from robovlms_mobile.ros.safety import Command, SafetyLayer
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
                 on_action: Callable[[dict[str, Any]], None] | None = None):
        check_instruction(instruction, where="--instruction")
        self.source, self.safety = source, safety
        self.clock = clock or safety.clock
        self.max_frame_age_s = max_frame_age_s
        self.on_action = on_action  # called after every source answer: stamp, velocity, accepted
        self._instruction = instruction
        self._frame: Frame | None = None
        self._cond = threading.Condition()
        self.ticks = self.errors = self.skipped_stale = 0
        self.last_error: str | None = None

    # ---- inputs (ROS callbacks) ------------------------------------------------------------
    def on_frame(self, image: np.ndarray | bytes, stamp: float | None = None) -> None:
        """A new camera frame (captured at `stamp`, controller clock; default now); replaces any frame not yet used."""
        with self._cond:
            self._frame = Frame(image, self.clock() if stamp is None else stamp)
            self._cond.notify_all()

    def on_estop(self, engaged: bool) -> None:
        """E-stop topic: True engages (latched), False releases; a release also starts a new episode."""
        self.safety.set_estop(engaged)
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
        self.ticks += 1
        accepted = self.safety.submit(velocity, stamp=frame.stamp, epoch=epoch)
        if self.on_action is not None:
            self.on_action({"stamp": frame.stamp, "answered": self.clock(), "velocity": _plain(velocity),
                            "accepted": accepted})
        return accepted

    def command(self) -> Command | None:
        """What to publish now (None: the rate limit says wait)."""
        return self.safety.command()

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
            if has_frame:
                self.tick()  # success or not: a failing server is not retried faster than tick_hz
                rest = period - (time.monotonic() - started)
                if rest > 0:
                    sleep(rest)

    def _reset_source(self) -> None:
        try:
            self.source.reset()
        except Exception as exc:  # noqa: BLE001 - the next tick retries through the source
            self.errors += 1
            self.last_error = f"reset failed: {type(exc).__name__}: {exc}"
            log.warning(self.last_error)

    def stats(self) -> dict[str, Any]:
        """Counters for logs and diagnostics."""
        return {"ticks": self.ticks, "errors": self.errors, "skipped_stale": self.skipped_stale,
                "rejected": self.safety.rejected, "state": self.safety.state(), "last_error": self.last_error}


def _plain(velocity: Any) -> Any:
    """A JSON-safe copy of what the source answered (numbers as floats, anything else as its repr)."""
    try:
        return [float(v) for v in velocity]
    except (TypeError, ValueError):
        return repr(velocity)
