"""A scheduled rollout on the simulator's light fleet: created a few seconds ahead it stays
pending and admits nobody, then the scheduler (two workers sharing its lease, on PostgreSQL)
starts it and the fleet commits it to the end; excluded devices are left alone."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from fleetcore.version import Version
from overlord.auth.models import KeyRole
from overlord.db import utcnow
from overlord.rollouts.models import DeviceOutcome, ReleaseKind, RolloutState
from overlord.rollouts.schemas import Exclusion, RolloutCreate, Selector
from simulator.light import LightFleet, LightTiming
from simulator.operator import OperatorClient
from simulator.releases import build_release, publish
from simulator.server import serve
from simulator.site import prepare_site

NEW = Version("2.0.0")


@pytest.mark.integration
def test_a_scheduled_rollout_waits_then_runs_to_the_end(pg_database: str, tmp_path: Path):
    site = prepare_site(tmp_path, pg_database)
    enrollment = site.token(KeyRole.ENROLLMENT, "schedule test")
    admin = site.token(KeyRole.ADMIN, "schedule test")
    build = build_release(tmp_path, NEW)
    env = site.env(engine_interval_s=0.5, cache_ttl_s=0.2)

    async def scenario(url: str) -> None:
        fleet = LightFleet(url, LightTiming(poll_s=0.5, install_s=0.5))
        operator = OperatorClient(url, admin)
        try:
            await fleet.enroll(enrollment, 12, Version("1.0.0"))
            runner = asyncio.create_task(fleet.run())
            await asyncio.to_thread(publish, site.repo_dir, site.keys, build)
            excluded = sorted(d.device_id for d in fleet.devices)[:2]
            start_at = utcnow() + timedelta(seconds=4)
            spec = RolloutCreate(
                name="scheduled",
                kind=ReleaseKind.OS,
                version=NEW,
                canary_devices=1,
                stages=[50, 100],
                success_window_s=0,
                start_at=start_at,
                deadline=start_at + timedelta(hours=1),
                selector=Selector(exclude=Exclusion(devices=excluded)),
            )
            created = await asyncio.to_thread(operator.create_rollout, spec)
            assert created.state is RolloutState.PENDING
            rollout = created
            # Until its start nobody is admitted, whatever the engine does meanwhile.
            while utcnow() < start_at - timedelta(seconds=1):
                seen = await asyncio.to_thread(operator.rollout, created.id)
                assert seen.state is RolloutState.PENDING and sum(seen.devices.values()) == 0
                await asyncio.sleep(0.5)
            give_up = time.monotonic() + 120
            while rollout.state is not RolloutState.COMPLETED:
                assert rollout.state in {RolloutState.PENDING, RolloutState.RUNNING}, rollout
                assert time.monotonic() < give_up, f"still {rollout.state.value}"
                await asyncio.sleep(0.5)
                rollout = await asyncio.to_thread(operator.rollout, rollout.id)
            fleet.stop.set()
            await runner
            versions = operator.versions()
        finally:
            operator.close()
            await fleet.close()
        assert rollout.devices[DeviceOutcome.SUCCEEDED] == 10
        assert versions == {"2.0.0": 10, "1.0.0": 2}

    with serve(env=env, workers=2, log=tmp_path / "overlord.log") as url:
        asyncio.run(scenario(url))
