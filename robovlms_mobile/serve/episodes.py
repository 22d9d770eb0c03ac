"""Per-episode state on the server: at most `capacity` episodes, least recently used evicted first."""

from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

State = TypeVar("State")
EPISODE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class EpisodeStore(Generic[State]):
    """Thread-safe LRU map episode id -> state; `factory` builds a fresh state."""

    def __init__(self, factory: Callable[[], State], capacity: int = 64):
        if capacity < 1:
            raise ValueError(f"episode capacity must be >= 1, got {capacity}")
        self.factory, self.capacity = factory, capacity
        self._items: OrderedDict[str, State] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, episode_id: str) -> State | None:
        """The episode's state (marked as recently used), or None when it is not active."""
        with self._lock:
            state = self._items.get(episode_id)
            if state is not None:
                self._items.move_to_end(episode_id)
            return state

    def start(self, episode_id: str | None = None) -> tuple[str, State, bool]:
        """(id, fresh state, whether it replaced an active one); a new id when `episode_id` is None."""
        episode_id = episode_id or uuid.uuid4().hex
        state = self.factory()
        with self._lock:
            restarted = self._items.pop(episode_id, None) is not None
            self._items[episode_id] = state
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
                self.evicted += 1
        return episode_id, state, restarted
