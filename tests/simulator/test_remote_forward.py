"""A simulated device (the real updater's Agent on a file-backed disk) whose ``fleet.yaml``
allows port forwarding serves ``fleetctl forward`` (its own process) through a served
Overlord: while nothing listens on the device's port a connection fails alone and the
session lives on; once a real HTTP server listens there, several pages fetched at once with
httpx arrive whole; Ctrl-C ends the session as the operator's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fleetcore.net import free_port
from tests.fleetctl.test_forward import allow_forwards
from tests.overlord.test_remote_agent import _until
from tests.simulator.remote import enrolled_device
from tests.webpages import fetch_all, page, serve_pages

PATHS = [f"/p{n}" for n in range(8)] + ["/big"]


def forward_process(base: str, token: str, *args: str) -> subprocess.Popen[str]:
    """``fleetctl forward ARGS`` as its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return subprocess.Popen(
        [sys.executable, "-m", "fleetctl", "--url", base, "--token", token, "forward", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def open_session(base: str, device_id: str, admin: dict[str, str]) -> dict[str, str]:
    """The device's open session, once fleetctl has opened it."""
    for _ in range(300):
        answer = httpx.get(
            f"{base}/api/v1/devices/{device_id}/remote-sessions?open=true", headers=admin
        )
        if answer.json():
            session: dict[str, str] = answer.json()[0]
            return session
        time.sleep(0.1)
    pytest.fail("fleetctl never opened the session")


def test_fleetctl_forwards_a_simulated_devices_port(tmp_path: Path):
    with enrolled_device(tmp_path, "sim-forward", remote_forward=True) as sim:
        admin = {"Authorization": f"Bearer {sim.admin}"}
        allow_forwards(sim.base, sim.admin, sim.device_id)
        local, remote = free_port(), free_port()
        operator = forward_process(sim.base, sim.admin, sim.device_id, f"{local}:{remote}")
        session = open_session(sim.base, sim.device_id, admin)
        sim.agent.cycle()  # the desired state names the session: the agent joins it

        with pytest.raises(httpx.RemoteProtocolError):  # nothing listens there yet
            httpx.get(f"http://127.0.0.1:{local}/p0", timeout=60)
        with serve_pages(remote):
            pages = fetch_all(local, PATHS)
        assert pages == {path: page(path) for path in PATHS}
        path = f"{sim.base}/api/v1/remote-sessions/{session['id']}"
        assert httpx.get(path, headers=admin).json()["state"] == "active"

        operator.send_signal(signal.SIGINT)
        _out, err = operator.communicate(timeout=60)
        assert operator.returncode == 0, err
        _until(lambda: not sim.agent.remote.serving, "the agent's session to end")
        ended = httpx.get(path, headers=admin).json()
    assert f"connection 1: cannot connect to port {remote} on this device" in err
    assert (ended["end_reason"], ended["end_detail"]) == ("operator", "the operator left")
