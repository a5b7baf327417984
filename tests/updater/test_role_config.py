"""Configuration variables on a simulated device: the agent against the test Overlord, with a
real RoleManager on an engine in memory (tests/roles/fakeengine.py). The role's ``.env``
follows the desired state's configuration, the role restarts only when a value it uses
changes, the heartbeat reports the applied digest, and a secret value is masked in every log
line and event."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import pytest

from fleetcore.logs import JsonLines
from fleetcore.release import Hardware
from fleetcore.version import Version
from fleetcore.wire import DesiredRole
from signing.client import ReleaseClient
from tests.roles.fakeengine import Harness, fake_harness
from tests.roles.helpers import make_bundle
from tests.updater.agents import make_agent, setup_device
from tests.updater.device import SimDevice
from tests.updater.servers import FleetServer
from updater.agent import Agent
from updater.roles.manager import FetchedBundle
from updater.rolesync import RoleSync

SECRET = "cam-rtsp-pw-5b1e"
TEMPLATE = "FPS={{ vars.CAMERA_FPS }}\nPASSWORD={{ vars.RTSP_PASSWORD | default('') }}\n"
ROLE = DesiredRole(name="webapp", version=Version("1.0.0"), target="roles/webapp/1.0.0")


def _no_repository() -> ReleaseClient:
    # The role is staged before the agent runs: nothing is fetched from the repository.
    return cast(ReleaseClient, None)


def _agent_with_role(device: SimDevice, server: FleetServer, harness: Harness) -> Agent:
    setup_device(device, server)
    agent = make_agent(device)
    agent.roles = RoleSync(
        manager=harness.manager,
        events=agent.events,
        open_client=_no_repository,
        cache_dir=device.base / "role-cache",
        hardware=Hardware.PI4,
    )
    return agent


def _stage(harness: Harness, tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "webapp")
    (folder / ".env.template").write_text(TEMPLATE)
    fetch = lambda _role: FetchedBundle(folder)  # noqa: E731
    harness.manager.apply([ROLE], fetch, variables={"CAMERA_FPS": "1"})


def _desired(config: dict[str, Any], digest: str) -> dict[str, Any]:
    return {
        "roles": [{"name": "webapp", "version": "1.0.0", "target": ROLE.target}],
        "config": config,
        "config_digest": digest,
    }


def test_the_role_follows_the_configuration_and_the_heartbeat_reports_it(
    device: SimDevice,
    server: FleetServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    harness = fake_harness(tmp_path, monkeypatch)
    _stage(harness, tmp_path)
    agent = _agent_with_role(device, server, harness)
    first, second, third = "1" * 64, "2" * 64, "3" * 64
    server.desired = _desired(
        {
            "CAMERA_FPS": {"value": "25"},
            "RTSP_PASSWORD": {"value": SECRET, "secret": True},
            "UNUSED": {"value": "a"},
        },
        first,
    )
    with caplog.at_level(logging.DEBUG):
        agent.cycle()
        assert f"FPS=25\nPASSWORD={SECRET}\n" in harness.env()
        assert harness.restarts() == 2  # staged, then restarted with the new configuration
        agent.cycle()  # 304: nothing to do again
        assert server.heartbeats[-1].config_digest == first and harness.restarts() == 2

        server.desired = _desired({"CAMERA_FPS": {"value": "25"}, "UNUSED": {"value": "b"}}, second)
        agent.cycle()
        assert "PASSWORD=\n" in harness.env() and harness.restarts() == 3

        server.desired = _desired({"CAMERA_FPS": {"value": "25"}, "UNUSED": {"value": "c"}}, third)
        agent.cycle()  # only a value no template reads: no restart, yet applied
        agent.cycle()
        assert harness.restarts() == 3 and server.heartbeats[-1].config_digest == third

        # A value the template needs is unset: the role keeps running, the digest stays.
        server.desired = _desired({}, "4" * 64)
        agent.cycle()
        agent.cycle()
        assert harness.restarts() == 3 and server.heartbeats[-1].config_digest == third
        assert "FPS=25\n" in harness.env()

    applied = [e for e in server.events if e["message"] == "restarted with the new configuration"]
    assert [e["reason"] for e in applied] == ["FPS, PASSWORD changed", "PASSWORD changed"]
    lines = "\n".join(JsonLines().format(r) for r in caplog.records)
    assert "keeps its configuration" in lines
    for said in (lines, repr(server.events), repr(server.heartbeats)):
        assert SECRET not in said
    files = [path for path in device.base.rglob("*") if path.is_file()]
    assert [path for path in files if SECRET.encode() in path.read_bytes()] == [], (
        "the agent's own files (queue, state, identity) never hold it"
    )
