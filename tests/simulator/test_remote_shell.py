"""A simulated device (the real updater's Agent on a file-backed disk) serves a remote shell
when its ``fleet.yaml`` allows it: an admin opens one on a served Overlord, the agent's next
cycle joins it, and a command typed by the operator runs and prints, with the exit status
back; without the owner's ``remote.shell`` the same device refuses."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from fleetcore.version import Version
from fleetcore.websocket import WebSocket
from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from simulator.device import SimulatedDevice
from simulator.releases import build_release
from tests.overlord.conftest import create_token
from tests.overlord.servers import overlord_process, server_env
from tests.overlord.test_remote_shell_replicas import _open_shell, _read_until_close
from tests.overlord.tufrepo import Repo, make_repo
from updater.agent import Agent

V1 = Version("1.0.0")


def enrolled_agent(
    tmp_path: Path, base: str, url: str, repo: Repo, *, remote_shell: bool
) -> tuple[Agent, str]:
    """A simulated device on v1, its agent enrolled with the Overlord at ``base``, and its
    id; ``remote_shell``: its fleet.yaml allows remote shells."""
    device = SimulatedDevice("sim-shell", tmp_path / "device")
    device.provision(
        build=build_release(tmp_path, V1),
        version=str(V1),
        root_json=(repo.path / "metadata" / "1.root.json").read_bytes(),
        overlord_url=base,
        enrollment_token=create_token(url, KeyRole.ENROLLMENT),
        remote_shell=remote_shell,
    )
    device.power_on()
    agent = device.start_agent(base)
    agent.cycle()  # enrols
    identity = device.identity()
    assert identity is not None
    return agent, identity.device_id


@pytest.mark.parametrize("owner_allows", [True, False], ids=["allowed", "vetoed"])
def test_a_simulated_device_serves_a_shell_only_when_its_owner_allows(
    tmp_path: Path, owner_allows: bool
):
    url = f"sqlite:///{tmp_path / 'overlord.db'}"
    migrate.upgrade(make_engine(url))
    repo = make_repo(tmp_path / "tuf")
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    with overlord_process(server_env(url, repo), log=tmp_path / "s.log") as base:
        agent, device_id = enrolled_agent(tmp_path, base, url, repo, remote_shell=owner_allows)
        session_id = _open_shell(base, device_id, admin)
        operator = WebSocket(f"{base}/api/v1/remote/{session_id}/attach", admin)
        agent.cycle()  # the desired state names the session: the agent joins it
        if owner_allows:  # the login shell's first output: the device has joined
            assert isinstance(operator.receive(30), bytes)
            operator.send_bytes(b"echo sim-$((3*7)); exit 2\n")
        output, controls = _read_until_close(operator)
        operator.close()
        agent.remote.stop()
        ended = httpx.get(f"{base}/api/v1/remote-sessions/{session_id}", headers=admin).json()
    if owner_allows:
        assert b"sim-21" in output
        assert controls[0] == {"type": "exit", "status": 2}
        assert ended["end_detail"] == "the shell exited with status 2"
    else:
        assert "fleet.yaml forbids shell" in json.dumps(controls)
        assert ended["end_reason"] == "device"
