"""A small thread-safe TTL cache for per-replica read caches (never coordination state)."""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Entries with their age; every drop or clear moves ``generation`` on.

    A reader that loads a value from the database takes ``generation`` first and passes it
    to :meth:`put`: if an invalidation arrived meanwhile, the possibly stale value is not
    stored (the next request loads it again).
    """

    def __init__(self, *, max_items: int = 100_000) -> None:
        self._items: dict[K, tuple[float, V]] = {}
        self._max = max_items
        self._lock = threading.Lock()
        self.generation = 0

    def put(self, key: K, value: V, *, generation: int | None = None) -> None:
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            if len(self._items) >= self._max and key not in self._items:
                self._items.pop(next(iter(self._items)))
            self._items[key] = (time.monotonic(), value)

    def get(self, key: K, *, max_age_s: float | None) -> V | None:
        """The cached value if younger than ``max_age_s`` (any age when None)."""
        entry = self._items.get(key)  # a dict read is atomic; writers hold the lock
        if entry is None:
            return None
        stored, value = entry
        if max_age_s is not None and time.monotonic() - stored > max_age_s:
            return None
        return value

    def drop(self, key: K) -> None:
        with self._lock:
            self.generation += 1
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._items.clear()
