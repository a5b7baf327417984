"""Configuration end to end: the ``overlord serve`` command (SQLite and PostgreSQL, logging
JSON lines), an operator over HTTP, and a device running the updater's own Overlord client,
RoleSync and RoleManager (on an engine in memory, tests/roles/fakeengine.py).

A value set for the device's group reaches the role's ``.env``; a device override wins and
its removal brings the group's value back; a value no template reads restarts nothing; the
device reports the digest it applied; a secret value reaches the ``.env`` and nothing else:
not the server's log, the device's events, the API's listings or the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import update

from fleetcore.release import Hardware
from fleetcore.version import Version
from fleetcore.wire import DesiredRole, DesiredState, EventBatch, Heartbeat, RegisterRequest
from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.configvars import sealing
from overlord.db import make_engine, make_sessionmaker, unit_of_work
from overlord.devices.models import Device
from signing.client import ReleaseClient
from simulator.site import scratch_database
from tests.overlord.conftest import create_token, heartbeat
from tests.overlord.servers import overlord_serve, server_env
from tests.overlord.tufrepo import make_repo
from tests.roles.fakeengine import Harness, fake_harness
from tests.roles.helpers import make_bundle
from updater.overlord import OverlordClient
from updater.queue import EventQueue
from updater.roles.manager import FetchedBundle
from updater.rolesync import RoleSync

SECRET = "e2e-rtsp-password-c0ffee"
TEMPLATE = "FPS={{ vars.CAMERA_FPS }}\nPASSWORD={{ vars.RTSP_PASSWORD | default('') }}\n"
ROLE = DesiredRole(name="webapp", version=Version("1.0.0"), target="roles/webapp/1.0.0")


@dataclass
class Served:
    url: str  # the Overlord's base URL
    database_url: str
    log: Path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    with _database(request, tmp_path) as database_url:
        migrate.upgrade(make_engine(database_url))
        repo = make_repo(tmp_path / "tuf")
        env = server_env(
            database_url, repo, OVERLORD_CONFIG_KEY=sealing.new_key(), FLEET_LOG_FORMAT="json"
        )
        log = tmp_path / "server.log"
        with overlord_serve(env, log=log) as url:
            yield Served(url, database_url, log)


def _database(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        return nullcontext(f"sqlite:///{tmp_path / 'e2e.db'}")
    return scratch_database(request.getfixturevalue("pg_url"), "overlord_config_e2e")


class SimulatedDevice:
    """What the agent does each cycle, minus the OS update: heartbeat, poll, sync, report."""

    def __init__(self, served: Served, harness: Harness, tmp_path: Path) -> None:
        self.client = OverlordClient(served.url, timeout=10)
        self.harness = harness
        self.events = EventQueue(tmp_path / "queue", max_items=100)
        self.sync = RoleSync(
            manager=harness.manager,
            events=self.events,
            open_client=lambda: cast(ReleaseClient, None),  # the role is staged already
            cache_dir=tmp_path / "role-cache",
            hardware=Hardware.PI4,
        )
        self.etag: str | None = None
        self.desired: DesiredState | None = None
        self.polls: list[int] = []

    def cycle(self) -> None:
        beat = Heartbeat.model_validate(heartbeat()).model_copy(
            update={"config_digest": self.sync.applied_digest}
        )
        self.client.heartbeat(beat)
        desired, self.etag = self.client.desired_state(self.etag)
        self.polls.append(304 if desired is None else 200)
        if desired is not None:
            self.desired = desired
        assert self.desired is not None
        self.sync.sync(self.desired)
        if batch := self.events.pending():
            self.events.ack(self.client.send_events(EventBatch(events=batch)).last_seq)

    def env(self) -> str:
        return self.harness.env()


def _enrol(served: Served, harness: Harness, tmp_path: Path) -> tuple[SimulatedDevice, str]:
    device = SimulatedDevice(served, harness, tmp_path)
    identity = device.client.register(
        RegisterRequest.model_validate(
            {
                "enrollment_token": create_token(served.database_url, KeyRole.ENROLLMENT),
                "hostname": "cam-07",
                "hardware": "pi4",
                "serial": "E2E1",
                "image_version": "1.0.0",
                "booted_slot": "a",
            }
        )
    )
    folder = make_bundle(tmp_path / "webapp")
    (folder / ".env.template").write_text(TEMPLATE)
    harness.manager.apply(
        [ROLE], lambda _role: FetchedBundle(folder), variables={"CAMERA_FPS": "0"}
    )
    # A rollout would set the device's desired roles; the test writes them itself (the change
    # log tells the server's cache).
    engine = make_engine(served.database_url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            session.execute(
                update(Device)
                .where(Device.id == identity.device_id)
                .values(desired_roles={"webapp": "1.0.0"})
            )
    finally:
        engine.dispose()
    return device, identity.device_id


def test_a_group_value_reaches_the_role_a_device_override_wins_and_unset_restores_it(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    harness = fake_harness(tmp_path, monkeypatch)
    device, device_id = _enrol(served, harness, tmp_path)
    admin = {"Authorization": f"Bearer {create_token(served.database_url, KeyRole.ADMIN)}"}
    with httpx.Client(base_url=f"{served.url}/api/v1", headers=admin, timeout=10) as operator:

        def ok(method: str, path: str, **kwargs: Any) -> Any:
            answer = operator.request(method, path, **kwargs)
            assert answer.is_success, (method, path, answer.status_code, answer.text)
            return answer.json() if answer.content else None

        ok("PUT", "/groups/cameras", json={})
        ok("PATCH", f"/devices/{device_id}", json={"group": "cameras"})
        ok("PUT", "/config/fleet/CAMERA_FPS", json={"value": "15"})
        ok("PUT", "/config/groups/cameras/CAMERA_FPS", json={"value": "25"})
        device.cycle()
        assert "FPS=25\n" in device.env() and harness.restarts() == 2
        device.cycle()
        assert device.polls[-1] == 304 and harness.restarts() == 2
        effective = ok("GET", f"/config/devices/{device_id}/effective")
        assert effective["applied_digest"] == effective["digest"]
        assert effective["variables"][0]["source"] == "group/cameras"

        ok("PUT", f"/config/devices/{device_id}/CAMERA_FPS", json={"value": "30"})
        device.cycle()
        assert "FPS=30\n" in device.env() and harness.restarts() == 3

        ok("PUT", "/config/fleet/UNUSED", json={"value": "x"})
        device.cycle()  # a new configuration, but nothing the role reads changed
        assert device.polls[-1] == 200 and harness.restarts() == 3

        ok("DELETE", f"/config/devices/{device_id}/CAMERA_FPS")
        device.cycle()
        assert "FPS=25\n" in device.env() and harness.restarts() == 4

        ok("PUT", "/config/groups/cameras/RTSP_PASSWORD", json={"value": SECRET, "secret": True})
        device.cycle()
        assert f"PASSWORD={SECRET}\n" in device.env() and harness.restarts() == 5
        ok("DELETE", "/config/groups/cameras/CAMERA_FPS")
        device.cycle()
        assert "FPS=15\n" in device.env() and harness.restarts() == 6
        device.cycle()
        effective = ok("GET", f"/config/devices/{device_id}/effective")
        assert effective["applied_digest"] == effective["digest"]

        seen = [
            ok("GET", path)
            for path in (
                "/config/fleet",
                "/config/groups/cameras",
                f"/config/devices/{device_id}",
                f"/config/devices/{device_id}/effective",
                f"/devices/{device_id}",
                f"/devices/{device_id}/events",
                "/audit",
            )
        ]
    events = seen[5]["items"][::-1]  # oldest first
    restarted = [e for e in events if e["message"] == "restarted with the new configuration"]
    assert [e["reason"] for e in restarted] == [
        "FPS changed",
        "FPS changed",
        "FPS changed",
        "PASSWORD changed",
        "FPS changed",
    ]
    assert "config.set" in {e["action"] for e in seen[6]["items"]}
    server_log = served.log.read_text(errors="replace")
    assert "config.set config/group/cameras" in server_log, "the audit lines are in the log"
    for said in (repr(seen), server_log):
        assert SECRET not in said
