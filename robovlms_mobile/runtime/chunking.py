"""Chunk strategies: how the (chunk, 2) velocities of each model query are spent over control ticks.

One control tick executes one chunk step (the chunk was trained on consecutive frames, one
step per frame). Every strategy answers two questions per tick: does this tick need a model
query (`needs_query`), and which velocity to execute (`action`, after `update` with the fresh
chunk when there was a query).

- receding horizon: query every tick, execute the first step;
- chunk reuse (k): query every k ticks, execute steps 0..k-1 of that chunk;
- temporal ensembling (ACT, Zhao et al. 2023): query every tick and average every stored chunk's
  prediction for the current tick with weights exp(-decay * i), i = 0 for the oldest chunk.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("receding", "reuse", "ensemble")
DEFAULT_ENSEMBLE_DECAY = 0.01  # ACT's default k


class ChunkStrategy(ABC):
    """Turns model chunks (n, 2) into one velocity (2,) per control tick."""

    name = "base"

    def __init__(self, chunk_size: int):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size

    @abstractmethod
    def needs_query(self) -> bool:
        """Whether this tick needs a fresh chunk from the model."""

    @abstractmethod
    def update(self, chunk: np.ndarray) -> None:
        """Feed the chunk (n, 2) queried at this tick."""

    @abstractmethod
    def action(self) -> np.ndarray:
        """The velocity (2,) to execute at this tick; advances to the next tick."""

    @abstractmethod
    def reset(self) -> None:
        """Forget every chunk (new episode)."""

    def _check(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[0] != self.chunk_size:
            raise ValueError(f"expected a chunk of shape ({self.chunk_size}, d), got {chunk.shape}")
        return chunk


class RecedingHorizon(ChunkStrategy):
    """Query every tick, execute the first step of the newest chunk."""

    name = "receding"

    def __init__(self, chunk_size: int):
        super().__init__(chunk_size)
        self._chunk: np.ndarray | None = None

    def needs_query(self) -> bool:
        return True

    def update(self, chunk: np.ndarray) -> None:
        self._chunk = self._check(chunk)

    def action(self) -> np.ndarray:
        if self._chunk is None:
            raise RuntimeError("no chunk yet: call update() on a tick that needs_query()")
        first, self._chunk = self._chunk[0], None
        return first.copy()

    def reset(self) -> None:
        self._chunk = None


class ChunkReuse(ChunkStrategy):
    """Query every `steps` ticks and execute that chunk's first `steps` steps in order."""

    name = "reuse"

    def __init__(self, chunk_size: int, steps: int):
        super().__init__(chunk_size)
        if not 1 <= steps <= chunk_size:
            raise ValueError(f"reuse steps must be in 1..{chunk_size} (the chunk length), got {steps}")
        self.steps = steps
        self._chunk: np.ndarray | None = None
        self._next = 0

    def needs_query(self) -> bool:
        return self._chunk is None or self._next >= self.steps

    def update(self, chunk: np.ndarray) -> None:
        self._chunk, self._next = self._check(chunk), 0

    def action(self) -> np.ndarray:
        if self._chunk is None or self._next >= self.steps:
            raise RuntimeError("chunk used up: call update() on a tick that needs_query()")
        step = self._chunk[self._next]
        self._next += 1
        return step.copy()

    def reset(self) -> None:
        self._chunk, self._next = None, 0


class TemporalEnsemble(ChunkStrategy):
    """Query every tick; average all stored predictions for this tick, weights exp(-decay * i), oldest i = 0."""

    name = "ensemble"

    def __init__(self, chunk_size: int, decay: float = DEFAULT_ENSEMBLE_DECAY):
        super().__init__(chunk_size)
        if not math.isfinite(decay) or decay < 0:
            raise ValueError(f"ensemble decay must be a finite number >= 0, got {decay}")
        self.decay = decay
        self._chunks: list[tuple[int, np.ndarray]] = []  # (age in ticks, chunk), oldest first
        self._fresh = False

    def needs_query(self) -> bool:
        return True

    def update(self, chunk: np.ndarray) -> None:
        self._chunks.append((0, self._check(chunk)))
        self._fresh = True

    def action(self) -> np.ndarray:
        if not self._fresh:
            raise RuntimeError("no chunk for this tick: call update() first")
        preds = np.stack([chunk[age] for age, chunk in self._chunks])  # (m, 2), oldest first
        weights = np.exp(-self.decay * np.arange(len(preds)))
        out = (weights[:, None] * preds).sum(0) / weights.sum()
        # every chunk moves one step on; those with no prediction left drop out
        self._chunks = [(age + 1, c) for age, c in self._chunks if age + 1 < self.chunk_size]
        self._fresh = False
        return out

    def reset(self) -> None:
        self._chunks, self._fresh = [], False


@dataclass(frozen=True)
class StrategySpec:
    """Which strategy (and its parameter) every new episode gets."""

    name: str = "receding"
    reuse_steps: int = 5
    ensemble_decay: float = DEFAULT_ENSEMBLE_DECAY

    def build(self, chunk_size: int) -> ChunkStrategy:
        """A fresh strategy instance for one episode."""
        if self.name == "receding":
            return RecedingHorizon(chunk_size)
        if self.name == "reuse":
            return ChunkReuse(chunk_size, self.reuse_steps)
        if self.name == "ensemble":
            return TemporalEnsemble(chunk_size, self.ensemble_decay)
        raise ValueError(f"unknown chunk strategy {self.name!r}; expected one of {STRATEGIES}")

    def describe(self) -> dict[str, object]:
        """JSON-friendly description (for /health and logs)."""
        extra = {"reuse": {"reuse_steps": self.reuse_steps}, "ensemble": {"ensemble_decay": self.ensemble_decay}}
        return {"name": self.name, **extra.get(self.name, {})}
