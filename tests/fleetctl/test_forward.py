"""``fleetctl forward`` as its own process against a served Overlord, with the device's
agent thread (``updater.remote.follow``): bad ``LOCAL:REMOTE`` and a local port in use are
one error line and open nothing; a viewer is refused; a device whose ``fleet.yaml`` forbids
forwarding makes fleetctl fail with the device's reason; an idle forward ends at the
Overlord's idle limit."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetcore.firstboot import RemoteAccess
from fleetcore.net import free_port
from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from tests.fleetctl.conftest import Fleet, _serve, one_line_error
from tests.fleetctl.test_logs import _device_serves, _fleetctl, _sessions


def allow_forwards(url: str, admin: str, device_id: str) -> None:
    answer = httpx.put(
        f"{url}/api/v1/config/devices/{device_id}/FLEET_REMOTE_FORWARD",
        json={"value": "1"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("ports", ["80", "0:80", "8080:70000", "a:b", "8080:80:1", ":80"])
def test_bad_ports_are_one_error_line_and_open_nothing(fleet: Fleet, ports: str):
    device_id = fleet.enroll("FWDCTL0")
    result = fleet.run("forward", device_id, ports)
    assert "is not LOCAL:REMOTE" in one_line_error(result, code=2)
    assert _sessions(fleet, device_id) == []


def test_a_local_port_in_use_is_one_error_line_and_opens_nothing(fleet: Fleet):
    device_id = fleet.enroll("FWDCTL1")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = fleet.run("forward", device_id, f"{port}:80")
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(result)
    assert _sessions(fleet, device_id) == []


def test_a_viewer_cannot_forward(fleet: Fleet):
    device_id = fleet.enroll("FWDCTL2")
    allow_forwards(fleet.url, fleet.admin, device_id)
    viewer = fleet.token(KeyRole.VIEWER)
    result = fleet.run("forward", device_id, f"{free_port()}:80", token=viewer)
    assert "a forward session needs the admin role" in one_line_error(result)
    assert _sessions(fleet, device_id) == []


def _ends_with(proc: subprocess.Popen[str], message: str) -> None:
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"fleetctl: error: the session ended: {message}"), lines
    assert "Traceback" not in err


def test_forward_fails_with_the_devices_veto(fleet: Fleet):
    device_id = fleet.enroll("FWDCTL3")
    allow_forwards(fleet.url, fleet.admin, device_id)
    proc = _fleetctl(fleet, "forward", device_id, f"{free_port()}:80")
    _device_serves(fleet, device_id, RemoteAccess())
    _ends_with(proc, "this device's fleet.yaml forbids forward sessions")
    (ended,) = _sessions(fleet, device_id)
    assert ended["end_reason"] == "device"


@pytest.fixture
def idle_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A served Overlord whose sessions end after 10 s without traffic (the least allowed)."""
    url = f"sqlite:///{tmp_path / 'overlord.db'}"
    migrate.upgrade(make_engine(url))
    yield from _serve(url, tmp_path, OVERLORD_REMOTE_IDLE_TIMEOUT_S="10")


def test_an_idle_forward_ends(idle_fleet: Fleet):
    fleet = idle_fleet
    device_id = fleet.enroll("FWDCTL4")
    allow_forwards(fleet.url, fleet.admin, device_id)
    proc = _fleetctl(fleet, "forward", device_id, f"{free_port()}:80")
    follower = _device_serves(fleet, device_id, RemoteAccess(forward=True))
    _ends_with(proc, "idle limit reached")
    follower.stop()
    (ended,) = _sessions(fleet, device_id)
    assert ended["end_reason"] == "idle"
