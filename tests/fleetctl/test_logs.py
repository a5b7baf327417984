"""``fleetctl logs`` as its own process against ``overlord serve``, with the device's agent
thread (``updater.remote.follow``) and a fake ``journalctl``: the entries are printed as
journalctl prints them, the session ends when fleetctl exits, and a device whose
``fleet.yaml`` forbids log tails makes fleetctl fail with the device's reason."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from fleetcore.firstboot import RemoteAccess
from tests.fleetctl.conftest import Fleet, one_line_error
from tests.updater.test_remote_journal import FIXTURES, fake_journal  # noqa: F401
from updater.overlord import Identity, OverlordClient
from updater.remote.follow import RemoteFollower

JOURNAL = FIXTURES / "good.jsonl"
PRINTED = [
    "2025-12-04T12:00:00Z nginx[812]: GET /health 200",
    "2025-12-04T12:00:01Z fleet-updater[400]: overlord unreachable: connection refused",
    "2025-12-04T12:00:02Z camera.service: cam\ufffd!",
]


def _device_serves(fleet: Fleet, device_id: str, access: RemoteAccess, **kw: Any):
    client = OverlordClient(fleet.url, timeout=10)
    token = fleet.devices[device_id]["Authorization"].removeprefix("Bearer ")
    client.identity = Identity(device_id, token)
    return device_joins(client, access, **kw)


def device_joins(client: OverlordClient, access: RemoteAccess, **kw: Any) -> RemoteFollower:
    """The agent's side: waits for the desired state to name a session, then joins it."""
    follower = RemoteFollower(client, access, version=lambda: "1.0.0", **kw)
    for _ in range(300):
        desired, _etag = client.desired_state(None)
        if desired is not None and desired.remote is not None:
            follower.follow(desired.remote)
            return follower
        time.sleep(0.1)
    pytest.fail("the desired state never named a session")


def _fleetctl(fleet: Fleet, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fleetctl", "--url", fleet.url, "--token", fleet.admin, *args],
        env=fleet.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _sessions(fleet: Fleet, device_id: str) -> list[dict[str, str]]:
    answer = httpx.get(
        f"{fleet.url}/api/v1/devices/{device_id}/remote-sessions",
        headers={"Authorization": f"Bearer {fleet.admin}"},
    )
    items: list[dict[str, str]] = answer.json()
    return items


@pytest.mark.usefixtures("fake_journal")
def test_logs_follows_the_journal_and_ends_the_session_on_exit(fleet: Fleet):
    device_id = fleet.enroll("LOGS1")
    proc = _fleetctl(fleet, "logs", device_id, "-f", "--unit", "nginx.service")
    follower = _device_serves(fleet, device_id, RemoteAccess())
    assert proc.stdout is not None
    assert [proc.stdout.readline().rstrip("\n") for _ in PRINTED] == PRINTED
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    for _ in range(300):
        if not follower.serving:
            break
        time.sleep(0.1)
    assert not follower.serving
    (ended,) = _sessions(fleet, device_id)
    assert (ended["state"], ended["end_reason"]) == ("ended", "operator")
    assert ended["end_detail"] == "the operator left"


@pytest.mark.usefixtures("fake_journal")
def test_logs_fails_with_the_devices_veto(fleet: Fleet):
    device_id = fleet.enroll("LOGS2")
    proc = _fleetctl(fleet, "logs", device_id)
    _device_serves(fleet, device_id, RemoteAccess(logs=False))
    _out, err = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, _out, err)
    assert "fleet.yaml forbids logs" in one_line_error(result)
    (ended,) = _sessions(fleet, device_id)
    assert ended["end_reason"] == "device"


@pytest.mark.usefixtures("fake_journal")
def test_logs_without_follow_prints_the_backlog_and_ends(fleet: Fleet):
    device_id = fleet.enroll("LOGS3")
    proc = _fleetctl(fleet, "logs", device_id, "--json")
    _device_serves(fleet, device_id, RemoteAccess())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [json.loads(entry).get("_PID") for entry in out.splitlines()] == ["812", "400", None]
    (ended,) = _sessions(fleet, device_id)
    assert ended["end_reason"] == "operator"
