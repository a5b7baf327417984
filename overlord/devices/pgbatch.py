"""The heartbeat batch on PostgreSQL: one statement on the event loop, its own transaction.

A batch is one data-modifying statement: the rows travel as one JSON parameter, unpacked by
``json_to_recordset``; the statement updates the devices, inserts the history of the devices
that exist and returns them. Sent on an autocommit connection it is its own transaction, so
a batch costs one round trip. The connection is psycopg's asyncio one, used from the
worker's event loop: no thread hand-off per batch, and no ORM layer for a statement that has
no objects (ADR 0080). The statement is prepared on first use on each connection.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Engine

from overlord.devices.heartbeats import Payloads, state_columns
from overlord.errors import DatabaseUnavailable

BATCH_SQL = """
WITH state AS (
    SELECT * FROM json_to_recordset(CAST(%(state)s AS json)) AS s(
        id text, image_version text, booted_slot text, committed_slot text,
        update_state text, health text, roles json, role_index text, safe_mode boolean,
        free_data_bytes bigint, uptime_s double precision, dropped_events bigint,
        node_exporter text, boot_mode text, config_digest text)
), updated AS (
    UPDATE devices AS d SET last_seen = %(now)s,
        image_version = state.image_version, booted_slot = state.booted_slot,
        committed_slot = state.committed_slot, update_state = state.update_state,
        health = state.health, roles = state.roles, role_index = state.role_index,
        safe_mode = state.safe_mode, free_data_bytes = state.free_data_bytes,
        uptime_s = state.uptime_s, dropped_events = state.dropped_events,
        node_exporter = state.node_exporter, boot_mode = state.boot_mode,
        config_digest = state.config_digest
    FROM state WHERE d.id = state.id
    RETURNING d.id, d.open_update
), history AS (
    INSERT INTO device_heartbeats
        (device_id, received_at, image_version, update_state, health, payload)
    SELECT h.id, %(now)s, h.image_version, h.update_state, h.health, h.payload
    FROM json_to_recordset(CAST(%(history)s AS json)) AS h(
        id text, image_version text, update_state text, health text, payload json)
    JOIN updated ON updated.id = h.id
)
SELECT id, open_update FROM updated
"""


def batch_parameters(payloads: Payloads, now: datetime) -> dict[str, Any]:
    """The statement's parameters: the newest state per device, every heartbeat's history."""
    latest = dict(payloads)
    # In id order, the order the ORM flushes device updates in (the rollout engine), so the
    # two lock rows in the same order and do not deadlock.
    state = [{"id": device_id, **state_columns(latest[device_id])} for device_id in sorted(latest)]
    history = [
        {
            "id": device_id,
            "image_version": p["image_version"],
            "update_state": p["update_state"],
            "health": p["health"],
            "payload": p,
        }
        for device_id, p in payloads
    ]
    return {"state": json.dumps(state), "history": json.dumps(history), "now": now}


class BatchConnections:
    """Autocommit connections of one event loop, each used by one batch at a time."""

    def __init__(self, engine: Engine) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    async def store(self, payloads: Payloads, now: datetime) -> dict[str, bool]:
        """Store a batch; returns {device id: has an open rollout update} of known devices.

        A connection that failed is dropped, not reused. A lost or unreachable server is
        :class:`DatabaseUnavailable`; any other error is the database refusing the batch.
        """
        try:
            conn = self._idle.pop() if self._idle else await self._connect()
        except psycopg.OperationalError as err:
            raise DatabaseUnavailable("the database is unreachable") from err
        try:
            cursor = await conn.execute(BATCH_SQL, batch_parameters(payloads, now), prepare=True)
            rows = await cursor.fetchall()
        except psycopg.OperationalError as err:
            await conn.close()
            raise DatabaseUnavailable("the database is unreachable") from err
        except psycopg.Error:
            self._idle.append(conn)  # autocommit: a refused statement leaves nothing open
            raise
        except BaseException:
            await conn.close()  # cancelled mid-statement: its state is unknown
            raise
        self._idle.append(conn)
        return {device_id: bool(open_update) for device_id, open_update in rows}

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=3
        )

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
