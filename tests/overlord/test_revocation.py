"""Revocation takes effect at once on every replica, on SQLite and on PostgreSQL.

Two real API processes share one database. A token revoked and a device decommissioned
through replica a must be refused by replica b, which had just resolved and cached both.
The bound is a safety limit for a slow machine, not a latency target: the measured delay
is printed (``pytest -s``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from tests.overlord.conftest import _truncate, create_token
from tests.overlord.servers import overlord_process
from tests.overlord.test_replicas import _env, _register
from tests.overlord.tufrepo import make_repo

SAFETY_BOUND_S = 5.0


def _seconds_until(refused: Callable[[], bool], what: str) -> float:
    start = time.monotonic()
    while not refused():
        waited = time.monotonic() - start
        if waited > SAFETY_BOUND_S:
            pytest.fail(f"{what} was still accepted after {waited:.1f} s")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        sqlite_url = f"sqlite:///{tmp_path / 'overlord.db'}"
        migrate.upgrade(make_engine(sqlite_url))
        return sqlite_url
    url: str = request.getfixturevalue("pg_database")
    engine = make_engine(url)
    _truncate(engine)
    engine.dispose()
    return url


def test_revocation_reaches_the_other_replica_at_once(shared_database: str, tmp_path: Path):
    url = shared_database
    repo = make_repo(tmp_path / "tuf")
    repo.add_os("1.0.0")
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    # Desired states cached for an hour, credentials for as long as revocations are heard.
    # On PostgreSQL credentials are cached for an hour even while not heard, so only the
    # NOTIFY can explain a quick refusal; SQLite runs with the default (no credential cache).
    env = _env(
        url,
        repo,
        OVERLORD_RUN_SCHEDULER="false",
        OVERLORD_CACHE_TTL_S="3600",
        OVERLORD_AUTH_CACHE_MAX_S="3600",
    )
    if not url.startswith("sqlite"):
        env["OVERLORD_AUTH_CACHE_TTL_S"] = "3600"
    with (
        overlord_process(env, log=tmp_path / "a.log") as a,
        overlord_process(env, log=tmp_path / "b.log") as b,
    ):
        viewer = httpx.post(
            f"{a}/api/v1/tokens", json={"role": "viewer", "name": "soon revoked"}, headers=admin
        ).json()
        viewer_auth = {"Authorization": f"Bearer {viewer['token']}"}
        device_id, device_auth = _register(a, enrollment, "REVOKE1")
        state_url = f"{b}/api/v1/devices/{device_id}/desired-state"
        assert httpx.get(f"{b}/api/v1/devices", headers=viewer_auth).status_code == 200
        etag = httpx.get(state_url, headers=device_auth).headers["etag"]
        poll = device_auth | {"If-None-Match": etag}
        assert httpx.get(state_url, headers=poll).status_code == 304

        assert httpx.delete(f"{a}/api/v1/tokens/{viewer['id']}", headers=admin).status_code == 204
        token_delay = _seconds_until(
            lambda: httpx.get(f"{b}/api/v1/devices", headers=viewer_auth).status_code == 401,
            "the revoked operator token",
        )
        decommission = httpx.patch(
            f"{a}/api/v1/devices/{device_id}/status",
            json={"status": "decommissioned"},
            headers=admin,
        )
        assert decommission.status_code == 200
        device_delay = _seconds_until(
            lambda: httpx.get(state_url, headers=poll).status_code == 401,
            "the decommissioned device's credential",
        )
    print(
        f"\n{url.split(':')[0]}: token refused after {token_delay * 1000:.0f} ms, "
        f"device after {device_delay * 1000:.0f} ms"
    )
