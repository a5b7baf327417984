"""Cross-replica invalidation of the per-replica caches (credentials, desired states).

A transaction that revokes a credential or changes a desired state calls :func:`announce`;
on PostgreSQL that is a ``pg_notify`` inside the same transaction, so PostgreSQL delivers it
to every listening replica when (and only if) the transaction commits. Each replica runs one
:class:`CacheKeeper` thread that

- listens on :data:`CHANNEL` and drops what the notifications name, within milliseconds of
  the commit;
- reads the desired-state change log every ``change_poll_s`` (``devices.changes``), which
  also covers SQLite and notifications missed while its listener was disconnected;
- passes ``remote:<device>`` (a remote session opened for the device) to ``on_remote``, which
  wakes the device's long-poll on this replica (ADR 0083). A wake missed while the listener
  was disconnected costs the device its normal poll interval, nothing more.

While the listener is connected (:attr:`CacheKeeper.live`), cached credentials are trusted
for ``auth_cache_max_s``; otherwise only for ``auth_cache_ttl_s``, and the credential cache
is cleared whenever the listener (re)connects, since it may have missed revocations.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from overlord.cache import TTLCache

log = logging.getLogger(__name__)
CHANNEL = "overlord_invalidate"
_CREDENTIAL = "credential:"
_DEVICE = "device:"
_REMOTE = "remote:"
ALL_DEVICES = "devices"
_RECONNECT_S = 1.0


def credential(token_hash: str) -> str:
    return _CREDENTIAL + token_hash


def device(device_id: str) -> str:
    return _DEVICE + device_id


def remote_session(device_id: str) -> str:
    return _REMOTE + device_id


def announce(session: Session, message: str) -> None:
    """Notify every replica when this session's transaction commits (PostgreSQL only).

    Goes through the session's connection, not ``Session.execute``, so that it is safe to
    call from a flush hook.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_notify(:channel, :message)"),
            {
                "channel": CHANNEL,
                "message": message,
            },
        )


class CacheKeeper:
    """One thread per worker process keeping its caches in step with the database."""

    def __init__(
        self,
        *,
        engine: Engine,
        principals: TTLCache[str, Any],
        desired: TTLCache[str, Any],
        follow_changes: Callable[[], None],
        poll_s: float,
        on_remote: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = engine
        self._on_remote = on_remote
        self._principals = principals
        self._desired = desired
        self._follow_changes = follow_changes
        self._poll_s = max(poll_s, 0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="overlord-caches", daemon=True)
        self.live = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def catch_up(self) -> None:
        """Read the change log now (what the thread does every ``poll_s``)."""
        self._follow_changes()

    def handle(self, message: str) -> None:
        if message.startswith(_CREDENTIAL):
            self._principals.drop(message.removeprefix(_CREDENTIAL))
        elif message.startswith(_DEVICE):
            self._desired.drop(message.removeprefix(_DEVICE))
        elif message == ALL_DEVICES:
            self._desired.clear()
        elif message.startswith(_REMOTE) and self._on_remote is not None:
            self._on_remote(message.removeprefix(_REMOTE))

    def _run(self) -> None:
        listen = self._engine.dialect.name == "postgresql"
        while not self._stop.is_set():
            try:
                if listen:
                    self._listen()
                else:
                    self._follow_changes()
                    self._stop.wait(self._poll_s)
            except Exception as err:  # a lost database: retry after a pause, never die
                self.live = False
                log.warning("cache invalidation interrupted: %r", err)
                self._stop.wait(_RECONNECT_S)

    def _listen(self) -> None:
        raw = self._engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()  # a dedicated connection for as long as it lives, outside the pool
        try:
            if conn is None:
                raise RuntimeError("the pool gave no driver connection")
            conn.autocommit = True
            conn.execute(f"LISTEN {CHANNEL}")
            # Revocations may have been missed while nobody listened.
            self._principals.clear()
            self.live = True
            while not self._stop.is_set():
                for note in conn.notifies(timeout=self._poll_s):
                    self.handle(note.payload)
                try:
                    self._follow_changes()
                except Exception as err:  # the listener itself is fine; try again next time
                    log.warning("reading the desired-state change log failed: %r", err)
        finally:
            self.live = False
            raw.close()
