"""The safety layer between any policy and the wheels: clamp, watchdog, e-stop, rate limits.

Pure Python with an injected clock (tests use a fake one). Every published command goes
through `SafetyLayer.command()`:
- e-stop (latched): zero until released, and after release zero until a fresh action arrives;
  an action computed from a frame captured before the e-stop (or during it) is refused after the
  release: each engage/release moves a barrier (stamp) and an epoch counter past it;
- watchdog: zero when the newest action is older than `deadline_s` (its stamp is the capture
  time of the frame it was computed from, so a slow model counts as stale too), or when there
  has been no action yet; stamps must be finite numbers;
- plans (asynchronous execution, `submit_plan`): a chunk's actions each carry the time they are
  scheduled for; an action is executed only within its own slot [due, due + min(step, deadline)),
  never past the end of the newest chunk (its horizon), and the output is zero ("dry") when the
  queue has run out. A plan replaces the queue; it is refused when it comes from before an
  e-stop, answers an older frame than the current plan's, arrives at or after its own horizon,
  or ends more than `max_horizon_s` after its frame (a delay longer than a chunk);
- clock: if the clock steps back, the current action is dropped and zero is published (a
  clock fault must not leave the last command on the wheels, nor silence the publisher);
- inputs: a velocity is exactly two finite real numbers (no strings, no bools);
- clamp: the velocity vector is scaled down uniformly until both axes are within their max
  speed (the direction is kept: a mecanum diagonal stays a diagonal);
- rate limits: acceleration (vector slew limit, `max_accel` m/s^2) and publications (at most
  `max_rate_hz`). Stopping is never delayed by either: a stop (e-stop, watchdog, or a zero
  action from the policy — or one with both axes below `stop_speed`) is published at once as an
  exact zero, unramped.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable, NamedTuple

from robovlms_mobile.task import CHUNK, MAX_SPEED, STEP_S

IDLE, OK, STALE, ESTOP, DRY = "idle", "ok", "stale", "estop", "dry"
RATE_JITTER = 0.05  # a timer at exactly max_rate_hz fires up to 5% early without being skipped


@dataclass(frozen=True)
class SafetyConfig:
    """Limits; speeds in m/s, times in seconds (defaults: the robot's keyboard speed, 0.5 s deadline)."""

    max_linear_x: float = MAX_SPEED
    max_linear_y: float = MAX_SPEED
    deadline_s: float = 0.5
    max_accel: float | None = 2.0  # m/s^2 on the velocity vector; None = no slew limit
    max_rate_hz: float = 20.0
    stop_speed: float = 0.0  # an action with both axes below this (m/s) is a stop: exact zero, at once
    # a plan may end at most this long after its frame's capture: a delay of up to one chunk, then the chunk
    max_horizon_s: float = 2 * CHUNK * STEP_S

    def __post_init__(self) -> None:
        for name in ("max_linear_x", "max_linear_y", "deadline_s", "max_rate_hz", "max_horizon_s"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise ValueError(f"safety {name} must be a finite number > 0, got {value!r}")
        if self.max_accel is not None and not (_is_number(self.max_accel) and math.isfinite(self.max_accel)
                                               and self.max_accel > 0):
            raise ValueError(f"safety max_accel must be > 0 or None, got {self.max_accel!r}")
        if not (_is_number(self.stop_speed) and math.isfinite(self.stop_speed) and self.stop_speed >= 0):
            raise ValueError(f"safety stop_speed must be a finite number >= 0, got {self.stop_speed!r}")


class Command(NamedTuple):
    """One velocity command to publish and why it has this value."""

    linear_x: float
    linear_y: float
    state: str  # "ok" (from an action), "idle" (none yet), "stale" (watchdog), "estop", "dry" (plan ran out)
    clamped: bool = False  # the action was scaled down to the speed limits
    limited: bool = False  # the acceleration limit held it back


ZERO = (0.0, 0.0)


def _is_number(value: Any) -> bool:
    """A real number that is not a bool (numpy scalars included; strings and bools are not numbers)."""
    return isinstance(value, Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _as_list(value: Any) -> list | None:
    """The items of a list-like value, or None: strings, bytes, dicts and non-iterables are not lists here."""
    if isinstance(value, (str, bytes, bytearray, dict)) or value is None:
        return None
    try:
        return list(value)
    except TypeError:
        return None


def parse_velocity(velocity: Any) -> tuple[float, float] | None:
    """[linear_x, linear_y] as two finite floats, or None: exactly two real numbers, no str/bool/NaN/inf."""
    items = _as_list(velocity)
    if items is None or len(items) != 2 or not all(_is_number(v) for v in items):
        return None
    vx, vy = float(items[0]), float(items[1])
    return (vx, vy) if math.isfinite(vx) and math.isfinite(vy) else None


def parse_stamp(stamp: Any) -> float | None:
    """A finite real stamp in seconds, or None."""
    return float(stamp) if _is_number(stamp) and math.isfinite(stamp) else None


def _parse_plan(plan: Any) -> list[tuple[float, tuple[float, float]]] | None:
    """[(time, velocity), ...] with finite times in increasing order and valid velocities, or None."""
    items = _as_list(plan)
    if items is None:
        return None
    out = []
    for item in items:
        try:
            due, velocity = item
        except (TypeError, ValueError):
            return None
        due, velocity = parse_stamp(due), parse_velocity(velocity)
        if due is None or velocity is None or (out and due <= out[-1][0]):
            return None
        out.append((due, velocity))
    return out


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
        self._barrier = -math.inf  # actions from frames captured before this time are refused (e-stop)
        self._epoch = 0  # +1 on every e-stop engage and release
        self._last_output = ZERO
        self._last_publish: float | None = None
        self._last_now = -math.inf  # the latest clock reading: a smaller one is a clock stepping back
        self._plan: list[tuple[float, tuple[float, float]]] = []  # (scheduled time, velocity), time order
        self._slot = 0.0  # seconds each planned action may be executed from its scheduled time
        self._horizon = -math.inf  # end of the newest plan's last slot
        self.refused_late = 0  # plans that arrived at or after their horizon
        self.rejected = 0  # non-finite or malformed actions and stamps ignored
        self.refused_stale = 0  # actions from frames captured before an e-stop, refused after it
        self.clock_faults = 0  # times the clock stepped back or read non-finite

    # ---- inputs ------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """E-stop epoch: read it before computing an action and pass it to `submit`."""
        return self._epoch

    def submit(self, velocity: Any, stamp: Any = None, epoch: int | None = None) -> bool:
        """A fresh action [linear_x, linear_y]; `stamp` = capture time of its frame (default now). False if ignored.

        Refused: anything but two finite real numbers, a non-finite stamp, an action while the
        e-stop is engaged, one from a frame captured before the last e-stop engage/release (by
        stamp, or by `epoch` when the caller read `self.epoch` before computing it), and an answer
        to an older frame than the current action's.
        """
        parsed = parse_velocity(velocity)
        when = None if stamp is None else parse_stamp(stamp)
        if parsed is None or (stamp is not None and when is None):
            with self._lock:
                self.rejected += 1
            return False
        with self._lock:
            now = self._read_clock()
            if now is None or self._estop:
                return False
            if (epoch is not None and epoch != self._epoch) or (when is not None and when < self._barrier):
                self.refused_stale += 1
                return False
            if when is not None and when > now:  # from the future: it would extend the deadline
                self.rejected += 1
                return False
            when = now if when is None else when
            if when < self._stamp:  # an answer to an older frame than the current one: keep the newer
                return False
            self._action, self._stamp = parsed, when
            self._plan, self._horizon = [], -math.inf
            return True

    def submit_plan(self, plan: Any, stamp: Any, step_s: Any, epoch: int | None = None) -> bool:
        """Scheduled actions [(time, [linear_x, linear_y]), ...] of one chunk, frame captured at `stamp`. False if ignored.

        Times are the controller clock's, one `step_s` apart; the plan replaces the queue. Refused
        as `submit` refuses (malformed, e-stop, before the barrier, from the future, older frame),
        and also when its horizon (last time + step_s) is already past, or lies more than
        `max_horizon_s` after the frame, or an action is scheduled more than a step before it.
        """
        when, step = parse_stamp(stamp), parse_stamp(step_s)
        entries = _parse_plan(plan)
        if when is None or step is None or step <= 0 or not entries or any(
                b[0] - a[0] < step * (1 - 1e-6) for a, b in zip(entries, entries[1:])):
            with self._lock:
                self.rejected += 1
            return False
        horizon = entries[-1][0] + step
        with self._lock:
            now = self._read_clock()
            if now is None or self._estop:
                return False
            if (epoch is not None and epoch != self._epoch) or when < self._barrier:
                self.refused_stale += 1
                return False
            if when > now or entries[0][0] < when - step or horizon - when > self.config.max_horizon_s + 1e-9:
                self.rejected += 1
                return False
            if when < self._stamp:  # an answer to an older frame than the current plan's
                return False
            if horizon <= now:  # every action of it is in the past
                self.refused_late += 1
                return False
            self._plan, self._slot, self._horizon = entries, min(step, self.config.deadline_s), horizon
            self._action, self._stamp = None, when
            return True

    def drop_plan(self) -> None:
        """Forget every queued action (the source failed): zero from now on, until a fresh plan."""
        with self._lock:
            self._plan, self._horizon = [], -math.inf

    def _scheduled(self, now: float) -> tuple[float, float] | None:
        """The planned action whose slot holds `now`, or None (the queue ran dry)."""
        if now >= self._horizon:
            return None
        for due, velocity in self._plan:
            if due <= now < due + self._slot:
                return velocity
        return None

    def set_estop(self, engaged: bool) -> None:
        """Engage (latched) or release the e-stop; a release needs a fresh action from a frame after it."""
        with self._lock:
            now = self._read_clock()
            if engaged:
                self._estop = True
                self._epoch += 1
                self._action, self._stamp = None, -math.inf
                self._plan, self._horizon = [], -math.inf
            elif self._estop:
                self._estop = False
                self._epoch += 1
                self._action, self._stamp = None, -math.inf
                self._plan, self._horizon = [], -math.inf
            else:
                return
            if now is not None:
                self._barrier = max(self._barrier, now)

    @property
    def estop(self) -> bool:
        """Whether the e-stop is engaged."""
        return self._estop

    @property
    def barrier(self) -> float:
        """Actions from frames captured before this time are refused: the latest e-stop engage or release."""
        return self._barrier

    # ---- output ------------------------------------------------------------------------
    def state(self, now: float | None = None) -> str:
        """ok / idle / stale / estop at time `now`."""
        now = self.clock() if now is None else now
        if self._estop:
            return ESTOP
        if self._plan:
            if not (_is_number(now) and math.isfinite(now)):
                return STALE
            return OK if self._scheduled(now) is not None else DRY
        if self._action is None:
            return IDLE
        if not (_is_number(now) and math.isfinite(now)) or now - self._stamp > self.config.deadline_s:
            return STALE
        return OK

    def command(self) -> Command | None:
        """The command to publish now, or None when the publication rate limit says wait."""
        cfg = self.config
        with self._lock:
            now = self._read_clock()
            if now is None:  # clock fault: publish zero at once, keep no action
                self._last_output, self._last_publish = ZERO, None
                return Command(0.0, 0.0, STALE)
            state = self.state(now)
            out, clamped, limited = ZERO, False, False
            action = self._scheduled(now) if self._plan else self._action
            if state == OK and max(abs(action[0]), abs(action[1])) >= cfg.stop_speed:
                out, clamped = clamp_velocity(*action, cfg.max_linear_x, cfg.max_linear_y)
            since = math.inf if self._last_publish is None else now - self._last_publish
            stopping = out == ZERO and self._last_output != ZERO  # never delayed by the rate limit nor ramped
            if since < (1.0 - RATE_JITTER) / cfg.max_rate_hz and not stopping:
                return None
            if out != ZERO and cfg.max_accel is not None:
                # the step allowed since the last command; a long pause allows no more than deadline_s worth
                dt = min(since, cfg.deadline_s) if self._last_publish is not None else 1.0 / cfg.max_rate_hz
                out, limited = self._slew(out, cfg.max_accel * dt)
            self._last_output, self._last_publish = out, now
            return Command(out[0], out[1], state, clamped, limited)

    def _read_clock(self) -> float | None:
        """The clock under the lock; None when it reads non-finite. A step back drops the action (fault)."""
        now = self.clock()
        if not (_is_number(now) and math.isfinite(now)):
            self.clock_faults += 1
            self._action, self._stamp = None, -math.inf
            self._plan, self._horizon = [], -math.inf
            return None
        if now < self._last_now:  # stepped back: nothing stamped on the old time base can be trusted
            self.clock_faults += 1
            self._action, self._stamp = None, -math.inf
            self._plan, self._horizon = [], -math.inf
            self._epoch += 1
            self._barrier, self._last_publish = now, None  # zero goes out at once, not after a rate-limit wait
        self._last_now = now
        return now

    def _slew(self, target: tuple[float, float], max_step: float) -> tuple[tuple[float, float], bool]:
        dx, dy = target[0] - self._last_output[0], target[1] - self._last_output[1]
        step = math.hypot(dx, dy)
        if step <= max_step:
            return target, False
        k = max_step / step
        return (self._last_output[0] + dx * k, self._last_output[1] + dy * k), True
