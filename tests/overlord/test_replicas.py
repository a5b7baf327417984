"""Two real API replicas on one PostgreSQL, and a PostgreSQL outage, over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from fleetcore.wire import DesiredState, RegisterResponse
from overlord.auth.models import KeyRole, Lease
from overlord.db import make_engine, make_sessionmaker, unit_of_work
from signing.client import ReleaseClient
from tests.overlord.conftest import create_token, heartbeat
from tests.overlord.servers import TcpProxy, overlord_process
from tests.overlord.tufrepo import Repo, make_repo

pytestmark = pytest.mark.integration


def _env(url: str, repo: Repo, **extra: str) -> dict[str, str]:
    return {
        "OVERLORD_DATABASE_URL": url,
        "OVERLORD_REPO_DIR": str(repo.path),
        "OVERLORD_KEYS_DIR": str(repo.keydir),
        "OVERLORD_ENGINE_INTERVAL_S": "0.5",
        "OVERLORD_LEASE_TTL_S": "5",
        "OVERLORD_CACHE_TTL_S": "0",
        "OVERLORD_OUTAGE_BACKOFF_S": "1",
    } | extra


def _register(base: str, token: str, serial: str) -> tuple[str, dict[str, str]]:
    body = {
        "enrollment_token": token,
        "hostname": serial.lower(),
        "hardware": "pi4",
        "serial": serial,
        "image_version": "1.0.0",
        "booted_slot": "a",
    }
    resp = httpx.post(f"{base}/api/v1/devices/register", json=body)
    assert resp.status_code == 201, resp.text
    reg = RegisterResponse.model_validate(resp.json())
    return reg.device_id, {"Authorization": f"Bearer {reg.device_token}"}


@pytest.fixture
def pg_repo(pg_database: str, tmp_path: Path) -> tuple[str, Repo]:
    engine = make_engine(pg_database)
    from tests.overlord.conftest import _truncate

    _truncate(engine)
    engine.dispose()
    repo = make_repo(tmp_path / "tuf")
    repo.add_os("1.0.0")
    repo.add_os("1.1.0")
    return pg_database, repo


def _wait_for(predicate, what: str, timeout_s: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_two_replicas_share_state_and_one_runs_the_engine(pg_repo, tmp_path: Path):
    url, repo = pg_repo
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    env = _env(url, repo)
    with (
        overlord_process(env, log=tmp_path / "a.log") as a,
        overlord_process(env, log=tmp_path / "b.log") as b,
    ):
        devices = [_register(a if i % 2 else b, enrollment, f"REP{i}") for i in range(4)]
        for device_id, auth in devices:
            assert (
                httpx.post(
                    f"{b}/api/v1/devices/{device_id}/heartbeat", json=heartbeat(), headers=auth
                ).status_code
                == 204
            )
        listed = httpx.get(f"{a}/api/v1/devices", headers=admin).json()
        assert listed["total"] == 4
        resp = httpx.post(
            f"{a}/api/v1/rollouts",
            json={"name": "two", "kind": "os", "version": "1.1.0", "stages": [100]},
            headers=admin,
        )
        assert resp.status_code == 201, resp.text

        def canary_visible_on_both() -> bool:
            wanted = []
            for base in (a, b):
                for device_id, auth in devices:
                    state = DesiredState.model_validate(
                        httpx.get(
                            f"{base}/api/v1/devices/{device_id}/desired-state", headers=auth
                        ).json()
                    )
                    wanted.append(state.os is not None)
            return sum(wanted) == 2

        _wait_for(
            canary_visible_on_both, "the engine to admit exactly one canary, seen by both replicas"
        )
        device_id, auth = devices[0]
        etags = {
            httpx.get(f"{base}/api/v1/devices/{device_id}/desired-state", headers=auth).headers[
                "etag"
            ]
            for base in (a, b)
        }
        assert len(etags) == 1
        with unit_of_work(make_sessionmaker(make_engine(url))) as session:
            holders = list(session.scalars(select(Lease.holder).where(Lease.name == "scheduler")))
        assert len(holders) == 1
        # A stock-protocol client reads the repository over real HTTP from either replica.
        client = ReleaseClient(
            metadata_dir=tmp_path / "tuf-client",
            base_url=f"{b}/tuf",
            bootstrap_root=(repo.path / "metadata" / "1.root.json").read_bytes(),
        )
        client.refresh()
        assert client.get_target("os/1.1.0/manifest.json").custom is not None


def test_postgres_outage_serves_cached_desired_state_and_refuses_writes(pg_repo, tmp_path: Path):
    url, repo = pg_repo
    parsed = make_url(url)
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    proxy.start()
    proxied = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    env = _env(proxied, repo, OVERLORD_RUN_SCHEDULER="false")
    try:
        with overlord_process(env, log=tmp_path / "outage.log") as base:
            device_id, auth = _register(base, enrollment, "OUT1")
            state_url = f"{base}/api/v1/devices/{device_id}/desired-state"
            first = httpx.get(state_url, headers=auth)
            assert first.status_code == 200
            beat_url = f"{base}/api/v1/devices/{device_id}/heartbeat"
            # A heartbeat first, so the writer's connection exists when the server is lost.
            assert httpx.post(beat_url, json=heartbeat(), headers=auth).status_code == 204
            proxy.cut()
            cached = httpx.get(state_url, headers=auth, timeout=30)
            assert cached.status_code == 200 and cached.json() == first.json()
            not_modified = httpx.get(
                state_url, headers=auth | {"If-None-Match": first.headers["etag"]}, timeout=30
            )
            assert not_modified.status_code == 304
            write = httpx.post(
                f"{base}/api/v1/devices/{device_id}/heartbeat",
                json=heartbeat(),
                headers=auth,
                timeout=30,
            )
            assert write.status_code == 503
            assert httpx.get(f"{base}/health", timeout=30).json()["database"] == "unreachable"
            proxy.start()

            def writes_work_again() -> bool:
                resp = httpx.post(
                    f"{base}/api/v1/devices/{device_id}/heartbeat",
                    json=heartbeat(),
                    headers=auth,
                    timeout=30,
                )
                return resp.status_code == 204

            _wait_for(writes_work_again, "automatic recovery after PostgreSQL returned")
    finally:
        proxy.cut()
