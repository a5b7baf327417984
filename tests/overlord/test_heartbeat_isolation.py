"""One device's heartbeat never fails another's, and what a device sends is bounded."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from sqlalchemy import select, update

from fleetcore.wire import Health, Heartbeat, RoleStatus
from overlord.db import unit_of_work
from overlord.devices import heartbeats, pgbatch
from overlord.devices.ingest import WRITERS, HeartbeatWriter
from overlord.devices.models import Device, DeviceHeartbeat
from overlord.rollouts import service as rollouts_service
from tests.overlord.conftest import Overlord, heartbeat


def _refuse_on_sqlite(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    real = heartbeats.record

    def refusing(session, *, items):
        if any(device_id == bad for device_id, _ in items):
            raise ValueError("value out of range for the column")  # as a driver would
        return real(session, items=items)

    monkeypatch.setattr(heartbeats, "record", refusing)


def _refuse_on_postgresql(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    """PostgreSQL itself refuses the batch: the bad device's row is past bigint."""
    real = pgbatch.beats_parameter

    def out_of_range(items):
        beats = json.loads(real(items))
        for beat in beats:
            if beat["id"] == bad:
                beat["p"]["free_data_bytes"] = 2**70
        return json.dumps(beats)

    monkeypatch.setattr(pgbatch, "beats_parameter", out_of_range)


def test_a_row_the_database_refuses_fails_only_its_own_heartbeat(overlord: Overlord, monkeypatch):
    devices = [overlord.enroll(f"ISO{i}")[0] for i in range(5)]
    bad = devices[2]
    if overlord.ctx.engine.dialect.name == "postgresql":
        _refuse_on_postgresql(monkeypatch, bad)
    else:
        _refuse_on_sqlite(monkeypatch, bad)
    writer = HeartbeatWriter(overlord.ctx)
    beat = Heartbeat.model_validate(heartbeat())

    async def all_at_once():
        results = await asyncio.gather(
            *(writer.submit(device, beat) for device in devices), return_exceptions=True
        )
        await writer.close()
        return results

    results = asyncio.run(all_at_once())
    failed = [device for device, result in zip(devices, results, strict=True) if result]
    assert failed == [bad]
    with overlord.ctx.sessions() as session:
        history = list(session.scalars(select(DeviceHeartbeat.device_id)))
    assert sorted(history) == sorted(set(devices) - {bad})  # each stored once, the bad one not


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"free_data_bytes": 2**64}, "free_data_bytes"),
        ({"dropped_events": -1}, "dropped_events"),
        ({"roles": [{"name": "x" * 100, "version": None, "health": "healthy"}]}, "name"),
        ({"roles": [{"name": "a\u0000b", "version": None, "health": "healthy"}]}, "name"),
        (
            {"roles": [{"name": f"r{i}", "version": None, "health": "healthy"} for i in range(65)]},
            "roles",
        ),
    ],
    ids=["int64", "negative", "long-role", "nul-role", "many-roles"],
)
def test_out_of_range_heartbeats_are_422_naming_the_field(overlord: Overlord, change, field):
    device_id, auth = overlord.enroll("BOUNDS")
    body = heartbeat() | change
    answer = overlord.client.post(f"/api/v1/devices/{device_id}/heartbeat", json=body, headers=auth)
    assert answer.status_code == 422
    assert field in str(answer.json()["detail"][0]["loc"])


def test_a_batch_stores_each_heartbeat_and_keeps_the_newest_state(overlord: Overlord):
    """Both stores (PostgreSQL's one statement, SQLite's ORM path) derive the same row."""
    device_id, _auth = overlord.enroll("BATCH1")
    older = Heartbeat.model_validate(heartbeat("1.0.0"))
    roles = [
        RoleStatus(name="cam", version=None, health=Health.HEALTHY, safe_mode=True),
        RoleStatus(name="zigbee", version=None, health=Health.DEGRADED),
    ]
    newer = Heartbeat.model_validate(heartbeat("1.1.0", roles=roles))
    writer = HeartbeatWriter(overlord.ctx)

    async def one_batch():
        await asyncio.gather(writer.submit(device_id, older), writer.submit(device_id, newer))
        await writer.close()

    asyncio.run(one_batch())
    with overlord.ctx.sessions() as session:
        device = session.get(Device, device_id)
        history = session.scalars(
            select(DeviceHeartbeat).where(DeviceHeartbeat.device_id == device_id)
        ).all()
    assert device is not None
    assert (device.image_version, device.role_index, device.safe_mode) == (
        "1.1.0",
        ",cam,zigbee,",
        True,
    )
    assert device.roles == newer.model_dump(mode="json")["roles"]
    assert (device.free_data_bytes, device.uptime_s) == (newer.free_data_bytes, newer.uptime_s)
    assert sorted(h.image_version for h in history) == ["1.0.0", "1.1.0"]
    assert [h.payload for h in sorted(history, key=lambda h: h.image_version)] == [
        older.model_dump(mode="json"),
        newer.model_dump(mode="json"),
    ]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_devices_in_a_rollout_never_hold_back_the_fleets_heartbeats(
    overlord: Overlord, monkeypatch
):
    """The rollout engine observes a device with an open update after its batch is stored;
    while it does, every writer slot stays free for the rest of the fleet (PostgreSQL)."""
    slow = [overlord.enroll(f"OBS{i}")[0] for i in range(WRITERS)]
    others = [overlord.enroll(f"FREE{i}")[0] for i in range(3)]
    with unit_of_work(overlord.ctx.sessions) as session:
        # admitted to a rollout
        session.execute(update(Device).where(Device.id.in_(slow)).values(open_update=True))
    entered, release = threading.Semaphore(0), threading.Event()
    real = rollouts_service.observe_heartbeat

    def blocking(session, *, device, heartbeat):
        entered.release()
        assert release.wait(30)
        real(session, device=device, heartbeat=heartbeat)

    monkeypatch.setattr(rollouts_service, "observe_heartbeat", blocking)
    writer = HeartbeatWriter(overlord.ctx)
    beat = Heartbeat.model_validate(heartbeat())

    async def scenario() -> None:
        waiting = []
        for device_id in slow:  # one batch each, both observed at once
            waiting.append(asyncio.create_task(writer.submit(device_id, beat)))
            assert await asyncio.to_thread(entered.acquire, True, 30)
        for _ in range(3):
            await asyncio.wait_for(
                asyncio.gather(*(writer.submit(d, beat) for d in others)), timeout=20
            )
        assert not any(task.done() for task in waiting)  # answered only once observed
        release.set()
        await asyncio.wait_for(asyncio.gather(*waiting), timeout=20)
        await writer.close()

    asyncio.run(scenario())
    with overlord.ctx.sessions() as session:
        stored = list(session.scalars(select(DeviceHeartbeat.device_id)))
        assert sorted(stored) == sorted(slow + 3 * others)
        opened = session.scalars(select(Device.open_update).where(Device.id.in_(slow)))
        assert not any(opened)  # observed: they are in no rollout after all
