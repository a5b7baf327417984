"""Events are never batched away: under heartbeat load on 2 workers each is stored, in order.

Heartbeats are group-committed (``overlord/devices/ingest.py``); events are not, and must
not be dropped or reordered by the load around them.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from fleetcore.wire import API_PREFIX
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from overlord.events.models import DeviceEvent
from simulator.load import (
    BlastPlan,
    LoadPlan,
    OpStats,
    blast_in_subprocess,
    enroll_fleet,
    heartbeat_body,
    http_request,
)
from simulator.server import serve
from simulator.site import prepare_site

BATCHES, PER_BATCH, SENDERS = 20, 10, 3


async def _send_events(base: str, device_id: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30.0) as client:
        for b in range(BATCHES):
            events = [
                {
                    "seq": b * PER_BATCH + i + 1,
                    "time": datetime.now(UTC).isoformat(),
                    "kind": "download-progress",
                    "message": f"{device_id} {b * PER_BATCH + i + 1}",
                }
                for i in range(PER_BATCH)
            ]
            url = f"{API_PREFIX}/devices/{device_id}/events"
            answer = await client.post(url, json={"events": events})
            assert answer.status_code == 200, answer.text
            assert answer.json()["last_seq"] == (b + 1) * PER_BATCH


@pytest.mark.integration
def test_every_event_is_stored_in_order_under_heartbeat_load(pg_database: str, tmp_path: Path):
    site = prepare_site(tmp_path, pg_database)
    token = site.token(KeyRole.ENROLLMENT, "events under load")
    with serve(env=site.env(run_scheduler=False), workers=2, log=tmp_path / "o.log") as base:
        plan = LoadPlan(base_url=base, enrollment_token=token, devices=40, concurrency=8)
        devices = asyncio.run(enroll_fleet(plan, OpStats()))
        body = json.dumps(heartbeat_body("1.0.0")).encode()
        beats = [
            http_request(
                "POST",
                f"{API_PREFIX}/devices/{d.device_id}/heartbeat",
                {"Authorization": f"Bearer {d.token}"},
                body,
            )
            for d in devices
        ]
        load = BlastPlan(base_url=base, requests=beats, seconds=4.0, concurrency=16)
        blasted: list[object] = []
        blaster = threading.Thread(target=lambda: blasted.append(blast_in_subprocess(load)))
        blaster.start()
        senders = devices[:SENDERS]

        async def send_all() -> None:
            await asyncio.gather(*(_send_events(base, d.device_id, d.token) for d in senders))

        asyncio.run(send_all())
        blaster.join()
    assert blasted, "the heartbeat load did not run"
    engine = make_engine(pg_database)
    with engine.connect() as conn:
        rows = conn.execute(
            select(DeviceEvent.device_id, DeviceEvent.seq).order_by(DeviceEvent.id)
        ).all()
    engine.dispose()
    for device in senders:
        seqs = [seq for device_id, seq in rows if device_id == device.device_id]
        assert seqs == list(range(1, BATCHES * PER_BATCH + 1))
