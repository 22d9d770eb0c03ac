"""The closed loop's executor: chunk queries that come back late, in simulated time.

`ExecutedPolicy` turns a chunk source (frame + instruction -> (n, 2) m/s) into the closed loop's
per-step policy through a `runtime.executor` execution (sync or async). Its answers arrive
`delay_steps` steps after their frame (deterministic), or, with `step_s`, after the wall time the
query really took mapped to steps: ceil(seconds / step_s), the first step that starts after the
answer came back. `act` returns None on an idle step (nothing to execute: the robot stands still,
which is no stop). The simulator is static, so the frame a query was sent with still shows where
the robot is for as long as it stands. With `committed_steps` k > 0 (a head trained with
`act_head.committed_steps`) each query also carries the actions that will run while it is out:
the executor's plan for the next min(k, expected delay) steps, the expected delay being
`delay_steps`, or the last measured one.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from robovlms_mobile.runtime.executor import ChunkExecutor, ExecutionSpec, Ticket

ChunkSource = Callable[..., np.ndarray]  # (frame, instruction[, committed (k, 2) m/s]) -> (n, 2) m/s


class ExecutedPolicy:
    """One episode at a time: queries `chunk_source` when the executor asks, delivers each answer late."""

    def __init__(self, chunk_source: ChunkSource, reset_source: Callable[[], None], chunk_size: int,
                 execution: ExecutionSpec, *, delay_steps: int = 0, step_s: float | None = None, committed_steps: int = 0):
        if not 0 <= delay_steps <= chunk_size:
            raise ValueError(f"delay steps must be in 0..{chunk_size} (the chunk length), got {delay_steps}")
        if not 0 <= committed_steps < chunk_size:
            raise ValueError(f"committed steps must be in 0..{chunk_size - 1}, got {committed_steps}")
        self.committed_steps = committed_steps
        self.chunk_source, self.reset_source = chunk_source, reset_source
        self.execution, self.delay_steps, self.step_s = execution, delay_steps, step_s
        self.executor: ChunkExecutor = execution.build(chunk_size)
        self._pending: list[tuple[int, Ticket, np.ndarray]] = []  # (arrival step, ticket, chunk)
        self.step = 0
        self.delays: list[int] = []  # steps each answer took, over all episodes

    def reset(self) -> None:
        self.reset_source()
        self.executor.reset()
        self._pending, self.step = [], 0

    def act(self, frame: np.ndarray, instruction: str) -> np.ndarray | None:
        """The velocity for this step, or None when there is nothing to execute (idle)."""
        step = self.step
        self._deliver(step)
        if self.executor.needs_query(step):
            ticket = self.executor.begin(step)
            started = time.perf_counter()
            if self.committed_steps:
                expected = self.delay_steps if self.step_s is None else (self.delays[-1] if self.delays else 0)
                committed = self.executor.committed(step, min(self.committed_steps, expected))
                chunk = self.chunk_source(frame, instruction, committed)
            else:
                chunk = self.chunk_source(frame, instruction)
            delay = self.delay_steps if self.step_s is None else math.ceil((time.perf_counter() - started) / self.step_s)
            self.delays.append(delay)
            self._pending.append((step + delay, ticket, chunk))
            self._deliver(step)
        self.step += 1
        return self.executor.pop(step)

    def _deliver(self, step: int) -> None:
        due = [p for p in self._pending if p[0] <= step]
        self._pending = [p for p in self._pending if p[0] > step]
        for _, ticket, chunk in due:
            self.executor.receive(ticket, chunk, step)


def jerk(velocities: list[np.ndarray]) -> float:
    """Mean |Δv| (m/s) between consecutive executed steps (an idle step executes zero)."""
    if len(velocities) < 2:
        return 0.0
    v = np.stack(velocities)  # (T, 2)
    return float(np.linalg.norm(np.diff(v, axis=0), axis=1).mean())
