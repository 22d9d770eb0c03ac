"""The safety layer between any policy and the wheels: clamp, watchdog, e-stop, rate limits.

Pure Python with an injected clock (tests use a fake one). Every published command goes
through `SafetyLayer.command()`:
- e-stop (latched): zero until released, and after release zero until a fresh action arrives;
- watchdog: zero when the newest action is older than `deadline_s` (its stamp is the capture
  time of the frame it was computed from, so a slow model counts as stale too), or when there
  has been no action yet;
- clamp: the velocity vector is scaled down uniformly until both axes are within their max
  speed (the direction is kept: a mecanum diagonal stays a diagonal);
- rate limits: acceleration (vector slew limit, `max_accel` m/s^2) and publications (at most
  `max_rate_hz`). Stopping is never delayed by either: a stop is published at once, unramped.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

IDLE, OK, STALE, ESTOP = "idle", "ok", "stale", "estop"
RATE_JITTER = 0.05  # a timer at exactly max_rate_hz fires up to 5% early without being skipped


@dataclass(frozen=True)
class SafetyConfig:
    """Limits; speeds in m/s, times in seconds (defaults: the robot's keyboard speed, 0.5 s deadline)."""

    max_linear_x: float = 1.15
    max_linear_y: float = 1.15
    deadline_s: float = 0.5
    max_accel: float | None = 2.0  # m/s^2 on the velocity vector; None = no slew limit
    max_rate_hz: float = 20.0

    def __post_init__(self) -> None:
        for name in ("max_linear_x", "max_linear_y", "deadline_s", "max_rate_hz"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"safety {name} must be a finite number > 0, got {value!r}")
        if self.max_accel is not None and not (math.isfinite(self.max_accel) and self.max_accel > 0):
            raise ValueError(f"safety max_accel must be > 0 or None, got {self.max_accel!r}")


class Command(NamedTuple):
    """One velocity command to publish and why it has this value."""

    linear_x: float
    linear_y: float
    state: str  # "ok" (from an action), "idle" (none yet), "stale" (watchdog), "estop"
    clamped: bool = False  # the action was scaled down to the speed limits
    limited: bool = False  # the acceleration limit held it back


ZERO = (0.0, 0.0)


def clamp_velocity(vx: float, vy: float, max_x: float, max_y: float) -> tuple[tuple[float, float], bool]:
    """Scale (vx, vy) uniformly into |vx| <= max_x, |vy| <= max_y; returns (velocity, whether scaled)."""
    scale = min(1.0, max_x / abs(vx) if vx else math.inf, max_y / abs(vy) if vy else math.inf)
    return (vx * scale, vy * scale), scale < 1.0


class SafetyLayer:
    """Turns possibly late, wrong-sized or missing actions into safe velocity commands."""

    def __init__(self, config: SafetyConfig | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config or SafetyConfig()
        self.clock = clock
        self._lock = threading.Lock()
        self._action: tuple[float, float] | None = None
        self._stamp = -math.inf
        self._estop = False
        self._last_output = ZERO
        self._last_publish: float | None = None
        self.rejected = 0  # non-finite or malformed actions ignored

    # ---- inputs ------------------------------------------------------------------------
    def submit(self, velocity: Sequence[float], stamp: float | None = None) -> bool:
        """A fresh action [linear_x, linear_y]; `stamp` = capture time of its frame (default now). False if ignored."""
        try:
            vx, vy = (float(v) for v in velocity)
        except (TypeError, ValueError):
            self.rejected += 1
            return False
        if not (math.isfinite(vx) and math.isfinite(vy)):
            self.rejected += 1
            return False
        with self._lock:
            if self._estop:
                return False
            now = self.clock()
            stamp = now if stamp is None else min(stamp, now)  # a stamp from the future must not extend the deadline
            if stamp < self._stamp:  # an answer to an older frame than the current one: keep the newer
                return False
            self._action, self._stamp = (vx, vy), stamp
            return True

    def set_estop(self, engaged: bool) -> None:
        """Engage (latched) or release the e-stop; a release needs a fresh action before moving again."""
        with self._lock:
            if engaged:
                self._estop = True
            elif self._estop:
                self._estop = False
                self._action, self._stamp = None, -math.inf

    @property
    def estop(self) -> bool:
        """Whether the e-stop is engaged."""
        return self._estop

    # ---- output ------------------------------------------------------------------------
    def state(self, now: float | None = None) -> str:
        """ok / idle / stale / estop at time `now`."""
        now = self.clock() if now is None else now
        if self._estop:
            return ESTOP
        if self._action is None:
            return IDLE
        if now - self._stamp > self.config.deadline_s:
            return STALE
        return OK

    def command(self) -> Command | None:
        """The command to publish now, or None when the publication rate limit says wait."""
        cfg = self.config
        with self._lock:
            now = self.clock()
            state = self.state(now)
            since = math.inf if self._last_publish is None else now - self._last_publish
            stopping = state != OK and self._last_output != ZERO
            if since < (1.0 - RATE_JITTER) / cfg.max_rate_hz and not stopping:
                return None
            clamped = limited = False
            if state != OK:
                out = ZERO
            else:
                out, clamped = clamp_velocity(*self._action, cfg.max_linear_x, cfg.max_linear_y)
                if cfg.max_accel is not None:
                    # the step allowed since the last command; a long pause allows no more than deadline_s worth
                    dt = min(since, cfg.deadline_s) if self._last_publish is not None else 1.0 / cfg.max_rate_hz
                    out, limited = self._slew(out, cfg.max_accel * dt)
            self._last_output, self._last_publish = out, now
            return Command(out[0], out[1], state, clamped, limited)

    def _slew(self, target: tuple[float, float], max_step: float) -> tuple[tuple[float, float], bool]:
        dx, dy = target[0] - self._last_output[0], target[1] - self._last_output[1]
        step = math.hypot(dx, dy)
        if step <= max_step:
            return target, False
        k = max_step / step
        return (self._last_output[0] + dx * k, self._last_output[1] + dy * k), True
