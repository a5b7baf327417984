"""One operator socket per session across replicas (ADR 0074).

Within one replica the hub refuses a second socket for a side; across replicas the operator's
attach also takes a PostgreSQL advisory lock named after the session, on a connection of its
own (outside the pool) held for as long as this replica holds the socket. A second attach on
any replica finds the lock taken and is refused; a replica that dies drops its connection,
and with it the lock. On SQLite (one replica) the hub's own rule is the whole rule.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Engine

_NAMESPACE = b"overlord-remote-operator:"


def lock_key(session_id: str) -> int:
    """The advisory lock's 64-bit key: a hash of the session id, in its own namespace."""
    digest = hashlib.sha256(_NAMESPACE + session_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Claim:
    """A held claim on a session's operator side; :meth:`release` gives it up."""

    def __init__(self, conn: Any = None) -> None:
        self._conn = conn

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # a session-level advisory lock ends with its connection
            self._conn = None


def take(engine: Engine, session_id: str) -> Claim | None:
    """The session's operator claim, or None when another socket holds it (blocking: call
    it from a worker thread)."""
    if engine.dialect.name != "postgresql":
        return Claim()
    raw = engine.raw_connection()
    conn = raw.driver_connection
    raw.detach()  # closed on release, never back in the pool with the lock held
    try:
        conn.autocommit = True  # type: ignore[union-attr]
        row = conn.execute(  # type: ignore[union-attr]
            "SELECT pg_try_advisory_lock(%s)", (lock_key(session_id),)
        ).fetchone()
    except BaseException:
        raw.close()
        raise
    if row is None or not row[0]:
        raw.close()
        return None
    return Claim(raw)
