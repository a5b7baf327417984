"""A simulated device (the real updater's Agent on a file-backed disk) serves a remote shell
when its ``fleet.yaml`` allows it: an admin opens one on a served Overlord, the agent's next
cycle joins it, and a command typed by the operator runs and prints, with the exit status
back; without the owner's ``remote.shell`` the same device refuses."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from fleetcore.websocket import WebSocket
from tests.overlord.test_remote_shell_replicas import _open_shell, _read_until_close
from tests.simulator.remote import enrolled_device


@pytest.mark.parametrize("owner_allows", [True, False], ids=["allowed", "vetoed"])
def test_a_simulated_device_serves_a_shell_only_when_its_owner_allows(
    tmp_path: Path, owner_allows: bool
):
    with enrolled_device(tmp_path, "sim-shell", remote_shell=owner_allows) as sim:
        admin = {"Authorization": f"Bearer {sim.admin}"}
        session_id = _open_shell(sim.base, sim.device_id, admin)
        operator = WebSocket(f"{sim.base}/api/v1/remote/{session_id}/attach", admin)
        sim.agent.cycle()  # the desired state names the session: the agent joins it
        if owner_allows:  # the login shell's first output: the device has joined
            assert isinstance(operator.receive(30), bytes)
            operator.send_bytes(b"echo sim-$((3*7)); exit 2\n")
        output, controls = _read_until_close(operator)
        operator.close()
        sim.agent.remote.stop()
        ended = httpx.get(f"{sim.base}/api/v1/remote-sessions/{session_id}", headers=admin).json()
    if owner_allows:
        assert b"sim-21" in output
        assert controls[0] == {"type": "exit", "status": 2}
        assert ended["end_detail"] == "the shell exited with status 2"
    else:
        assert "fleet.yaml forbids shell" in json.dumps(controls)
        assert ended["end_reason"] == "device"
