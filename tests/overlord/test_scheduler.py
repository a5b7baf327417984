"""The background jobs: one lease holder, timestamp re-signing, heartbeat retention."""

from __future__ import annotations

import itertools
import json
import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from overlord.context import AppContext
from overlord.db import unit_of_work, utcnow
from overlord.devices.models import DeviceHeartbeat
from overlord.scheduler import Scheduler
from tests.overlord.conftest import Overlord, heartbeat, settings_for


@pytest.mark.parametrize("uptime_s", [5.0, 86_400.0], ids=["just-booted", "up-a-day"])
def test_one_replica_runs_the_jobs_and_keeps_the_repository_fresh(
    overlord: Overlord, monkeypatch: pytest.MonkeyPatch, uptime_s: float
):
    # The monotonic clock counts from boot: the first pass prunes however long the host is up.
    clock = iter(itertools.count(uptime_s))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    device_id, auth = overlord.enroll("SCH1")
    overlord.client.post(f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(), headers=auth)
    ctx = overlord.ctx
    with unit_of_work(ctx.sessions) as session:
        session.add(
            DeviceHeartbeat(
                device_id=device_id,
                received_at=utcnow() - timedelta(days=30),
                image_version="1.0.0",
                update_state="idle",
                health="healthy",
                payload={},
            )
        )
    timestamp = overlord.repo.path / "metadata" / "timestamp.json"
    stale = time.time() - 2 * overlord.settings.timestamp_refresh_s
    os.utime(timestamp, (stale, stale))
    before = json.loads(timestamp.read_bytes())["signed"]["version"]

    first = Scheduler(ctx)
    second = Scheduler(
        AppContext.create(settings_for(overlord.settings.database_url, overlord.repo))
    )
    assert first.run_once()
    assert not second.run_once(), "a second replica must not run the jobs while the lease is held"
    assert json.loads(timestamp.read_bytes())["signed"]["version"] == before + 1
    with unit_of_work(ctx.sessions) as session:
        assert session.scalar(select(func.count()).select_from(DeviceHeartbeat)) == 1
