"""The heartbeat batch on PostgreSQL: one statement on the event loop, its own transaction.

A batch is one data-modifying statement: the heartbeats travel as one JSON parameter (each
converted once, by pydantic); the statement updates the devices, inserts the history of the
devices that exist and returns them. Sent on an autocommit connection it is its own transaction, so
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

from fleetcore.wire import Heartbeat
from overlord.errors import DatabaseUnavailable

# A device heard twice in one batch keeps its newest state (DISTINCT ON, last arrival), and
# the rows are updated in id order, the order the ORM flushes device updates in (the rollout
# engine), so the two lock rows in the same order and do not deadlock. The columns derived
# from the roles are those of ``heartbeats.state_columns`` (the portable path).
BATCH_SQL = """
WITH beats AS (
    SELECT b.beat->>'id' AS id, b.beat->'p' AS p, b.n
    FROM jsonb_array_elements(CAST(%(beats)s AS jsonb)) WITH ORDINALITY AS b(beat, n)
), latest AS (
    SELECT DISTINCT ON (id) id, p FROM beats ORDER BY id, n DESC
), updated AS (
    UPDATE devices AS d SET last_seen = %(now)s,
        image_version = l.p->>'image_version',
        booted_slot = l.p->>'booted_slot',
        committed_slot = l.p->>'committed_slot',
        update_state = l.p->>'update_state',
        health = l.p->>'health',
        roles = CAST(l.p->'roles' AS json),
        role_index = ',' || COALESCE((
            SELECT string_agg(r.role->>'name' || ',', '' ORDER BY r.n)
            FROM jsonb_array_elements(l.p->'roles') WITH ORDINALITY AS r(role, n)), ''),
        safe_mode = COALESCE((
            SELECT bool_or(CAST(r.role->>'safe_mode' AS boolean))
            FROM jsonb_array_elements(l.p->'roles') AS r(role)), false),
        free_data_bytes = CAST(l.p->>'free_data_bytes' AS bigint),
        uptime_s = CAST(l.p->>'uptime_s' AS double precision),
        dropped_events = CAST(l.p->>'dropped_events' AS bigint),
        node_exporter = l.p->>'node_exporter',
        boot_mode = l.p->>'boot_mode',
        config_digest = l.p->>'config_digest',
        board = l.p->'board'->>'board',
        bootloader_version = CAST(l.p->'bootloader'->>'version' AS bigint),
        staged_version = l.p->>'staged_version'
    FROM (SELECT * FROM latest ORDER BY id) AS l WHERE d.id = l.id
    RETURNING d.id, d.open_update
), history AS (
    INSERT INTO device_heartbeats
        (device_id, received_at, image_version, update_state, health, payload)
    SELECT b.id, %(now)s, b.p->>'image_version', b.p->>'update_state', b.p->>'health',
        CAST(b.p AS json)
    FROM beats AS b JOIN updated ON updated.id = b.id
)
SELECT id, open_update FROM updated
"""


def beats_parameter(items: list[tuple[str, Heartbeat]]) -> str:
    """The batch as one JSON array, in arrival order: each heartbeat converted once, by
    pydantic's serializer, and stored as it is (the history's payload)."""
    beats = ",".join(f'{{"id":{json.dumps(d)},"p":{hb.model_dump_json()}}}' for d, hb in items)
    return f"[{beats}]"


class BatchConnections:
    """Autocommit connections of one event loop, each used by one batch at a time."""

    def __init__(self, engine: Engine) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    async def store(self, items: list[tuple[str, Heartbeat]], now: datetime) -> dict[str, bool]:
        """Store a batch; returns {device id: has an open rollout update} of known devices.

        A connection that failed is dropped, not reused. A lost or unreachable server is
        :class:`DatabaseUnavailable`; any other error is the database refusing the batch.
        """
        try:
            conn = self._idle.pop() if self._idle else await self._connect()
        except psycopg.OperationalError as err:
            raise DatabaseUnavailable("the database is unreachable") from err
        try:
            params = {"beats": beats_parameter(items), "now": now}
            cursor = await conn.execute(BATCH_SQL, params, prepare=True)
            rows = await cursor.fetchall()
        except psycopg.Error as err:
            lost = isinstance(err, psycopg.OperationalError | psycopg.InterfaceError)
            if lost or conn.broken or conn.closed:
                await conn.close()
                raise DatabaseUnavailable("the database is unreachable") from err
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
