"""Chunk execution in control steps: synchronous (wait for each answer) or asynchronous (drive while the model thinks).

Time is counted in control steps (one chunk step each). A query is a `Ticket`: the episode it
belongs to, the step its frame was captured at, how many actions had been executed by then, and
its order. Its answer, a chunk (n, 2), is aligned by the delay it actually had: d = the actions
executed since its frame (steps the robot stood idle do not count: it did not move), so its first
d actions are already in the past and are dropped; action d + j is scheduled for the step of
arrival + j, and the rest merges into the queue by a named policy:

- latest: the newest chunk replaces the queue (LeRobot async_inference's default);
- ensemble: every step averages all predictions for it, weights exp(-decay * i), i = 0 for the
  oldest (ACT's temporal ensembling, over the overlap);
- crossfade: over the first n overlapping steps the velocity moves linearly from the old plan
  to the new one ((j + 1) / (n + 1) of the new at overlap step j), then the new chunk alone.

The queue never reaches past the end of the newest chunk (its horizon). Answers are refused
when they belong to an earlier episode, come out of order, or have d >= n (every action already
in the past). Asynchronous: a query is due when fewer than `threshold` actions are queued and
none is in flight (one model: one query at a time, so with a delay of d steps the queue stays
full exactly when 2 d <= n); `pop` gives None (an idle step) when the queue is dry. Synchronous:
a `ChunkStrategy` decides when to query and the robot waits (idle) until the answer comes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robovlms_mobile.runtime.chunking import DEFAULT_ENSEMBLE_DECAY, ChunkStrategy, StrategySpec

EXECUTIONS = ("sync", "async")
MERGES = ("latest", "ensemble", "crossfade")
DEFAULT_CROSSFADE_STEPS = 3
OLD_EPISODE, OUT_OF_ORDER, PAST_HORIZON, FROM_THE_FUTURE = "old_episode", "out_of_order", "past_horizon", "from_the_future"


@dataclass(frozen=True)
class Ticket:
    """One query in flight: its episode, its frame's step, the actions executed by then, its order in the episode."""

    episode: int
    frame_step: int
    seq: int
    executed: int = 0


@dataclass(frozen=True)
class ExecutionSpec:
    """How chunks are executed: sync with a chunk strategy, or async with a merge policy and a query threshold."""

    execution: str = "sync"
    merge: str = "latest"
    threshold: int | None = None  # async: query when fewer actions than this are queued; None = the chunk length
    crossfade_steps: int = DEFAULT_CROSSFADE_STEPS
    ensemble_decay: float = DEFAULT_ENSEMBLE_DECAY
    strategy: StrategySpec = field(default_factory=StrategySpec)  # sync only

    def __post_init__(self) -> None:
        if self.execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {self.execution!r}")
        if self.merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {self.merge!r}")
        if self.threshold is not None and self.threshold < 1:
            raise ValueError(f"query threshold must be >= 1, got {self.threshold}")
        if self.crossfade_steps < 1:
            raise ValueError(f"crossfade steps must be >= 1, got {self.crossfade_steps}")
        if not math.isfinite(self.ensemble_decay) or self.ensemble_decay < 0:
            raise ValueError(f"ensemble decay must be a finite number >= 0, got {self.ensemble_decay}")

    def build(self, chunk_size: int) -> "ChunkExecutor":
        """A fresh executor for one run of episodes."""
        if self.execution == "sync":
            return SyncExecutor(chunk_size, self.strategy.build(chunk_size))
        threshold = chunk_size if self.threshold is None else self.threshold
        if threshold > chunk_size:
            raise ValueError(f"query threshold must be in 1..{chunk_size} (the chunk length), got {threshold}")
        return AsyncExecutor(chunk_size, self.merge, threshold, self.crossfade_steps, self.ensemble_decay)

    def describe(self) -> dict[str, object]:
        """JSON-friendly description (reports, logs)."""
        if self.execution == "sync":
            return {"execution": "sync", "strategy": self.strategy.describe()}
        extra = {"crossfade": {"crossfade_steps": self.crossfade_steps},
                 "ensemble": {"ensemble_decay": self.ensemble_decay}}.get(self.merge, {})
        return {"execution": "async", "merge": self.merge, "threshold": self.threshold, **extra}


class ChunkExecutor:
    """What both executions share: episodes, tickets, refusal counters."""

    def __init__(self, chunk_size: int):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.episode = 0
        self._seq = 0
        self._last_seq = -1  # the newest answer merged in this episode
        self.in_flight: Ticket | None = None
        self.executed = 0  # actions executed in this episode
        self.refused: dict[str, int] = {OLD_EPISODE: 0, OUT_OF_ORDER: 0, PAST_HORIZON: 0, FROM_THE_FUTURE: 0}
        self.queries = 0

    def reset(self) -> None:
        """A new episode: the queue is emptied and every answer to an earlier query is refused."""
        self.episode += 1
        self._seq, self._last_seq, self.in_flight, self.executed = 0, -1, None, 0

    def begin(self, frame_step: int) -> Ticket:
        """Record a query on the frame captured at `frame_step`; the returned ticket goes back with its answer."""
        self.advance(frame_step)
        ticket = Ticket(self.episode, int(frame_step), self._seq, self.executed)
        self._seq += 1
        self.in_flight = ticket
        self.queries += 1
        return ticket

    def fail(self, ticket: Ticket) -> None:
        """The query behind `ticket` failed: nothing is in flight any more."""
        if self.in_flight == ticket:
            self.in_flight = None

    def receive(self, ticket: Ticket, chunk: np.ndarray, step: int) -> bool:
        """The answer to `ticket` arrived at `step`; False (and counted in `refused`) when it may not be used."""
        if self.in_flight == ticket:
            self.in_flight = None
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[0] != self.chunk_size or not np.isfinite(chunk).all():
            raise ValueError(f"expected a finite chunk of shape ({self.chunk_size}, d), got {chunk.shape}")
        self.advance(step)
        reason = self._refusal(ticket, step)
        if reason is not None:
            self.refused[reason] += 1
            return False
        self._last_seq = ticket.seq
        self._merge(chunk, ticket, step)
        return True

    def _refusal(self, ticket: Ticket, step: int) -> str | None:
        if ticket.episode != self.episode:
            return OLD_EPISODE
        if ticket.seq <= self._last_seq:
            return OUT_OF_ORDER
        if step < ticket.frame_step:
            return FROM_THE_FUTURE
        return None

    def _merge(self, chunk: np.ndarray, ticket: Ticket, step: int) -> None:
        raise NotImplementedError

    def advance(self, step: int) -> None:
        """Steps before `step` are over: their queued actions count as executed (the bridge's safety layer ran them)."""

    def needs_query(self, step: int) -> bool:
        """Whether a query should start at `step`."""
        raise NotImplementedError

    def pop(self, step: int) -> np.ndarray | None:
        """The velocity (2,) for `step`, or None: nothing to execute (an idle step)."""
        raise NotImplementedError

    def committed(self, frame_step: int, steps: int) -> np.ndarray:
        """The actions (k, 2), k <= `steps`, that run from `frame_step` on whatever a query on that frame answers.

        Sync: none (the robot waits for the answer). Async: the executed and queued actions of the
        steps frame_step, frame_step + 1, ..., up to the first step with none.
        """
        return np.zeros((0, 2))


class AsyncExecutor(ChunkExecutor):
    """Drive from a queue of scheduled actions while the next query runs on a newer frame."""

    def __init__(self, chunk_size: int, merge: str = "latest", threshold: int | None = None,
                 crossfade_steps: int = DEFAULT_CROSSFADE_STEPS, ensemble_decay: float = DEFAULT_ENSEMBLE_DECAY):
        super().__init__(chunk_size)
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        self.merge, self.threshold = merge, chunk_size if threshold is None else threshold
        if not 1 <= self.threshold <= chunk_size:
            raise ValueError(f"query threshold must be in 1..{chunk_size}, got {self.threshold}")
        self.crossfade_steps, self.ensemble_decay = crossfade_steps, ensemble_decay
        self._queue: dict[int, np.ndarray] = {}  # step -> velocity (2,)
        self._preds: dict[int, list[np.ndarray]] = {}  # ensemble: step -> predictions, oldest first
        self._done: dict[int, np.ndarray] = {}  # step -> velocity executed, the last chunk_size steps (committed())
        self.horizon = 0  # first step after the newest chunk's last action

    def reset(self) -> None:
        super().reset()
        self._queue, self._preds, self._done, self.horizon = {}, {}, {}, 0

    def committed(self, frame_step: int, steps: int) -> np.ndarray:
        out = []
        for s in range(frame_step, frame_step + max(steps, 0)):
            v = self._done.get(s, self._queue.get(s))
            if v is None:
                break
            out.append(v)
        return np.stack(out) if out else np.zeros((0, 2))

    def clear(self) -> None:
        """Drop every queued action (the queue runs dry now), keeping the episode."""
        self._queue, self._preds = {}, {}

    def _refusal(self, ticket: Ticket, step: int) -> str | None:
        reason = super()._refusal(ticket, step)
        if reason is None and self.executed - ticket.executed >= self.chunk_size:
            return PAST_HORIZON
        return reason

    def advance(self, step: int) -> None:
        for s in sorted(s for s in self._queue if s < step):
            self.executed += 1
            self._record(s, self._queue[s])
            self._drop(s)

    def _record(self, s: int, velocity: np.ndarray) -> None:
        self._done[s] = velocity.copy()
        for old in [k for k in self._done if k <= s - self.chunk_size]:
            del self._done[old]

    def queued(self, step: int) -> int:
        """Actions scheduled for `step` or later."""
        return sum(1 for s in self._queue if s >= step)

    def needs_query(self, step: int) -> bool:
        return self.in_flight is None and self.queued(step) < self.threshold

    def plan(self, step: int) -> list[tuple[int, np.ndarray]]:
        """The queue from `step` on: (step, velocity (2,)) in step order."""
        return [(s, self._queue[s].copy()) for s in sorted(self._queue) if s >= step]

    def pop(self, step: int) -> np.ndarray | None:
        self.advance(step)
        if step not in self._queue:
            return None
        velocity = self._queue[step]
        self._drop(step)
        self.executed += 1
        self._record(step, velocity)
        return velocity.copy()

    def _drop(self, s: int) -> None:
        self._queue.pop(s, None)
        self._preds.pop(s, None)

    def _merge(self, chunk: np.ndarray, ticket: Ticket, step: int) -> None:
        delay = self.executed - ticket.executed  # actions executed since the frame: chunk[:delay] is in the past
        new = {step + j: chunk[delay + j] for j in range(self.chunk_size - delay)}
        self.horizon = step + self.chunk_size - delay
        for s in [s for s in self._queue if s < step or s >= self.horizon]:
            self._drop(s)
        if self.merge == "latest":
            self._queue = dict(new)
        elif self.merge == "ensemble":
            for s, v in new.items():
                preds = self._preds.setdefault(s, [self._queue[s]] if s in self._queue else [])
                preds.append(v)
                weights = np.exp(-self.ensemble_decay * np.arange(len(preds)))
                self._queue[s] = (weights[:, None] * np.stack(preds)).sum(0) / weights.sum()
        else:  # crossfade over the first crossfade_steps steps both plans cover
            overlap = [s for s in sorted(new) if s in self._queue][:self.crossfade_steps]
            merged = dict(new)
            for j, s in enumerate(overlap):
                w = (j + 1) / (self.crossfade_steps + 1)
                merged[s] = (1 - w) * self._queue[s] + w * new[s]
            self._queue = merged


class SyncExecutor(ChunkExecutor):
    """Wait for every answer (idle steps while it is out), then spend it through a `ChunkStrategy`."""

    def __init__(self, chunk_size: int, strategy: ChunkStrategy):
        super().__init__(chunk_size)
        self.strategy = strategy
        self._fresh = False  # an answer came and this step has not used it yet

    def reset(self) -> None:
        super().reset()
        self.strategy.reset()
        self._fresh = False

    def needs_query(self, step: int) -> bool:
        return self.in_flight is None and not self._fresh and self.strategy.needs_query()

    def _merge(self, chunk: np.ndarray, ticket: Ticket, step: int) -> None:
        # the robot stood still while it waited: the frame still shows where it is, nothing is dropped
        self.strategy.update(chunk)
        self._fresh = True

    def pop(self, step: int) -> np.ndarray | None:
        if self.in_flight is not None or (not self._fresh and self.strategy.needs_query()):
            return None
        self._fresh = False
        self.executed += 1
        return self.strategy.action()
