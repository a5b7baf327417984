"""Pre-staged installs end to end (ADR 0082): the real updater's Agent, on a file-backed disk,
against a served Overlord on SQLite and PostgreSQL. A running rollout hints a device whose
maintenance window is closed; the agent stages the release, its heartbeat's staged_version
reaches the device API; once the window opens the device is admitted and goes straight to
the trial reboot without fetching a chunk."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from fleetcore.version import Version
from fleetcore.wire import UpdateState
from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from overlord.rollouts import service as rollouts_service
from simulator.releases import build_release, publish
from tests.overlord.conftest import create_token
from tests.overlord.servers import overlord_process, server_env
from tests.overlord.tufrepo import make_repo
from tests.simulator.remote import enrol

V1, V2 = Version("1.0.0"), Version("2.0.0")


def _tick(url: str) -> None:
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            rollouts_service.tick(session, now=utcnow())
    finally:
        engine.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_real_agent_stages_reports_and_is_admitted_without_a_download(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
):
    url = (
        f"sqlite:///{tmp_path / 'overlord.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_database")
    )
    migrate.upgrade(make_engine(url))
    repo = make_repo(tmp_path / "tuf")
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    old, new = build_release(tmp_path, V1), build_release(tmp_path, V2)
    publish(repo.path, repo.keys, new)
    with overlord_process(server_env(url, repo), log=tmp_path / "s.log") as base:
        device, agent, device_id = enrol(tmp_path, "sim-stage", base, url, repo, old)
        device_url = f"{base}/api/v1/devices/{device_id}"
        now = utcnow()
        closed = {
            "window_start": (now + timedelta(hours=2)).strftime("%H:%M:%S"),
            "window_end": (now + timedelta(hours=3)).strftime("%H:%M:%S"),
        }
        httpx.put(f"{base}/api/v1/groups/night", json=closed, headers=admin).raise_for_status()
        httpx.patch(device_url, json={"group": "night"}, headers=admin).raise_for_status()
        rollout = {
            "name": "stage-me",
            "kind": "os",
            "version": str(V2),
            "stages": [100],
            "success_window_s": 0,
            "selector": {"groups": ["night"]},
        }
        httpx.post(f"{base}/api/v1/rollouts", json=rollout, headers=admin).raise_for_status()
        _tick(url)  # hinted, not admitted: the window is closed

        agent.cycle()  # stages
        state, _target, _failure = device.update_state()
        assert state is UpdateState.IDLE and not device.marker.exists()
        agent.cycle()  # its heartbeat names what it staged
        shown = httpx.get(device_url, headers=admin).json()
        assert (shown["staged_version"], shown["update_state"]) == (str(V2), "idle")
        assert agent.engine.last_stats["fetched_chunks"] > 0  # what the seed did not have

        httpx.put(f"{base}/api/v1/groups/night", json={}, headers=admin).raise_for_status()
        _tick(url)  # the window is gone: admitted
        agent = device.start_agent(base)  # a fresh process: its writer statistics are empty
        written = device.disk.stat().st_mtime_ns
        agent.cycle()
        assert device.update_state()[0] is UpdateState.TRIAL_REBOOT
        assert device.marker.exists()  # the reboot into the trial was requested
        assert agent.engine.last_stats == {}  # no chunk fetched, no slot written
        assert device.disk.stat().st_mtime_ns == written
