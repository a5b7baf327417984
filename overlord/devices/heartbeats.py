"""Storing a batch of heartbeats (the group commit of ``devices.ingest``) through the ORM.

Each heartbeat updates its device's row (a device heard twice in one batch keeps the newest)
and adds a history row. This is the portable path (SQLite): a look-up, an executemany update
and a multi-row insert. PostgreSQL takes one statement instead (``devices.pgbatch``), which
derives the same columns as :func:`state_columns` in SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
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
    "staged_version",
)

Payloads = list[tuple[str, dict[str, Any]]]  # (device id, a heartbeat's JSON form)


def state_columns(payload: dict[str, Any]) -> dict[str, Any]:
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
        "staged_version": payload.get("staged_version"),
    }


def record(session: Session, *, items: list[tuple[str, Heartbeat]]) -> tuple[set[str], set[str]]:
    """Store a batch; returns (devices with an open rollout update, unknown device ids)."""
    payloads = [(device_id, hb.model_dump(mode="json")) for device_id, hb in items]
    found = _record_portable(session, payloads, utcnow())
    return opened_and_missing(items, found)


def opened_and_missing(
    items: list[tuple[str, Heartbeat]], found: dict[str, bool]
) -> tuple[set[str], set[str]]:
    """(devices with an open rollout update, unknown device ids) from the devices found."""
    ids = {device_id for device_id, _hb in items}
    return {d for d, is_open in found.items() if is_open}, ids - set(found)


def _record_portable(session: Session, payloads: Payloads, now: datetime) -> dict[str, bool]:
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
            {"b_id": device_id, "b_last_seen": now}
            | {f"b_{c}": v for c, v in state_columns(p).items()}
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
