"""Work done on rank 0 only, entered by every rank: the others wait at one broadcast and get its result.

Under DDP any collective (a checkpoint save, a barrier, a metric reduction) must be entered by
every rank, and rank-0-only work (closed-loop evaluation, GIFs, JSON files) must not leave the
other ranks running ahead into the next collective. `on_rank_zero` runs a function on rank 0,
then broadcasts its result (or its error) so every rank leaves with the same value, or raises
the same error instead of waiting forever for a rank that has failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class RankZeroError(RuntimeError):
    """Raised on the other ranks when rank 0 failed inside `on_rank_zero`."""


def on_rank_zero(trainer: Any, what: str, fn: Callable[[], T]) -> T:
    """`fn()` on global rank 0; every rank returns its result (the one broadcast is the barrier)."""
    result: Any = None
    error: BaseException | None = None
    if trainer.is_global_zero:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - shared with the other ranks, then re-raised here
            error = exc
    message = None if error is None else f"{type(error).__name__}: {error}"
    result, message = trainer.strategy.broadcast((result, message), src=0)
    if error is not None:
        raise error
    if message is not None:
        raise RankZeroError(f"rank 0 failed in {what}: {message}")
    return result
