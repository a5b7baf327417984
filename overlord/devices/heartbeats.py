"""Storing a batch of heartbeats (the group commit of ``devices.ingest``).

Each heartbeat updates its device's row (a device heard twice in one batch keeps the newest)
and adds a history row. On PostgreSQL the whole batch is one statement: the rows travel as
one JSON parameter, unpacked by ``json_to_recordset``, and a data-modifying CTE updates the
devices, inserts the history of the devices that exist and returns them; with the commit
that is two round trips per batch, whatever its size. Other databases (SQLite) take a
look-up, an executemany update and a multi-row insert.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from fleetcore.wire import Heartbeat
from overlord.db import Base, utcnow
from overlord.devices.models import Device, DeviceHeartbeat

_STATE_COLUMNS = (
    "image_version",
    "booted_slot",
    "committed_slot",
    "update_state",
    "health",
    "roles",
    "role_index",
    "safe_mode",
    "free_data_bytes",
    "uptime_s",
    "dropped_events",
    "node_exporter",
    "boot_mode",
    "config_digest",
    "board",
    "bootloader_version",
)

_PG_BATCH = text(
    """
WITH state AS (
    SELECT * FROM json_to_recordset(CAST(:state AS json)) AS s(
        id text, image_version text, booted_slot text, committed_slot text,
        update_state text, health text, roles json, role_index text, safe_mode boolean,
        free_data_bytes bigint, uptime_s double precision, dropped_events bigint,
        node_exporter text, boot_mode text, config_digest text, board text,
        bootloader_version bigint)
), updated AS (
    UPDATE devices AS d SET last_seen = :now,
        image_version = state.image_version, booted_slot = state.booted_slot,
        committed_slot = state.committed_slot, update_state = state.update_state,
        health = state.health, roles = state.roles, role_index = state.role_index,
        safe_mode = state.safe_mode, free_data_bytes = state.free_data_bytes,
        uptime_s = state.uptime_s, dropped_events = state.dropped_events,
        node_exporter = state.node_exporter, boot_mode = state.boot_mode,
        config_digest = state.config_digest, board = state.board,
        bootloader_version = state.bootloader_version
    FROM state WHERE d.id = state.id
    RETURNING d.id, d.open_update
), history AS (
    INSERT INTO device_heartbeats
        (device_id, received_at, image_version, update_state, health, payload)
    SELECT h.id, :now, h.image_version, h.update_state, h.health, h.payload
    FROM json_to_recordset(CAST(:history AS json)) AS h(
        id text, image_version text, update_state text, health text, payload json)
    JOIN updated ON updated.id = h.id
)
SELECT id, open_update FROM updated
"""
)


def _state(payload: dict[str, Any]) -> dict[str, Any]:
    """A device row's columns from a heartbeat's JSON form."""
    roles = payload["roles"]
    return {
        "image_version": payload["image_version"],
        "booted_slot": payload["booted_slot"],
        "committed_slot": payload["committed_slot"],
        "update_state": payload["update_state"],
        "health": payload["health"],
        "roles": roles,
        "role_index": "," + "".join(f"{r['name']}," for r in roles),
        "safe_mode": any(r["safe_mode"] for r in roles),
        "free_data_bytes": payload["free_data_bytes"],
        "uptime_s": payload["uptime_s"],
        "dropped_events": payload["dropped_events"],
        "node_exporter": payload["node_exporter"],
        "boot_mode": payload["boot_mode"],
        "config_digest": payload["config_digest"],
        "board": (payload.get("board") or {}).get("board"),
        "bootloader_version": (payload.get("bootloader") or {}).get("version"),
    }


def record(session: Session, *, items: list[tuple[str, Heartbeat]]) -> tuple[set[str], set[str]]:
    """Store a batch; returns (devices with an open rollout update, unknown device ids)."""
    now = utcnow()
    payloads = [(device_id, hb.model_dump(mode="json")) for device_id, hb in items]
    if session.connection().dialect.name == "postgresql":
        found = _record_postgresql(session, payloads, now)
    else:
        found = _record_portable(session, payloads, now)
    ids = {device_id for device_id, _hb in items}
    return {d for d, is_open in found.items() if is_open}, ids - set(found)


def _record_postgresql(
    session: Session, payloads: list[tuple[str, dict[str, Any]]], now: datetime
) -> dict[str, bool]:
    latest = dict(payloads)
    # In id order, the order the ORM flushes device updates in (the rollout engine), so the
    # two lock rows in the same order and do not deadlock.
    state = [{"id": device_id, **_state(latest[device_id])} for device_id in sorted(latest)]
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
    rows = session.connection().execute(
        _PG_BATCH, {"state": json.dumps(state), "history": json.dumps(history), "now": now}
    )
    return {device_id: bool(open_update) for device_id, open_update in rows}


def _record_portable(
    session: Session, payloads: list[tuple[str, dict[str, Any]]], now: datetime
) -> dict[str, bool]:
    ids = {device_id for device_id, _p in payloads}
    found = {
        device_id: bool(open_update)
        for device_id, open_update in session.execute(
            select(Device.id, Device.open_update).where(Device.id.in_(ids))
        )
    }
    rows = [(device_id, p) for device_id, p in payloads if device_id in found]
    if not rows:
        return found
    devices = Base.metadata.tables[Device.__tablename__]
    connection = session.connection()
    connection.execute(
        update(devices)
        .where(devices.c.id == bindparam("b_id"))
        .values(
            last_seen=bindparam("b_last_seen"),
            **{c: bindparam(f"b_{c}") for c in _STATE_COLUMNS},
        ),
        [
            {"b_id": device_id, "b_last_seen": now} | {f"b_{c}": v for c, v in _state(p).items()}
            for device_id, p in sorted(dict(rows).items())
        ],
    )
    connection.execute(
        insert(Base.metadata.tables[DeviceHeartbeat.__tablename__]),
        [
            {
                "device_id": device_id,
                "received_at": now,
                "image_version": p["image_version"],
                "update_state": p["update_state"],
                "health": p["health"],
                "payload": p,
            }
            for device_id, p in rows
        ],
    )
    return found
