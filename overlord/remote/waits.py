"""Devices holding a long-poll for a remote session, and waking them (ADR 0083).

One registry per worker process. A device's wait registers an :class:`asyncio.Event` on the
event loop that serves it; :meth:`RemoteWaits.wake` may be called from any thread (the
invalidation listener hearing ``remote:<device>`` from any replica, or a route in the thread
pool after its commit) and sets the events on their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RemoteWaits:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    @contextmanager
    def watch(self, device_id: str) -> Iterator[asyncio.Event]:
        """An event set when a session is opened for ``device_id`` while the block runs.

        Register before looking for a pending session: one opened between the look and the
        wait then still sets the event.
        """
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiting.setdefault(device_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                entries = self._waiting.get(device_id, set())
                entries.discard(entry)
                if not entries:
                    self._waiting.pop(device_id, None)

    def wake(self, device_id: str) -> None:
        """Wake every wait of ``device_id`` in this process; any thread."""
        with self._lock:
            entries = list(self._waiting.get(device_id, ()))
        for loop, event in entries:
            # A closed loop (the worker is stopping) has nobody waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    @property
    def held(self) -> int:
        """How many waits this process holds now."""
        with self._lock:
            return sum(len(entries) for entries in self._waiting.values())
