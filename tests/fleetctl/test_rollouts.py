"""Rollouts through fleetctl; ``wait`` follows the engine (ticked by the test) to the end."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from fleetcore.wire import EventKind, UpdateState
from tests.fleetctl.conftest import Fleet, one_line_error
from tests.overlord.conftest import events, heartbeat


def _report(fleet: Fleet, device_id: str, kind: EventKind, reason: str | None = None) -> None:
    auth = fleet.devices[device_id]
    base = f"{fleet.url}/api/v1/devices/{device_id}"
    answer = httpx.post(f"{base}/events", json=events((1, kind, "1.1.0", reason)), headers=auth)
    assert answer.status_code == 200, answer.text
    if kind is EventKind.UPDATE_COMMITTED:
        beat = heartbeat("1.1.0", state=UpdateState.COMMITTED)
        assert httpx.post(f"{base}/heartbeat", json=beat, headers=auth).status_code == 204


def _admitted(fleet: Fleet, rollout_id: int) -> list[str]:
    shown = fleet.json("rollouts", "show", str(rollout_id))
    return [
        u["device_id"] for u in shown["device_updates"] if u["outcome"] in ("pending", "updating")
    ]


@contextlib.contextmanager
def _wait(fleet: Fleet, rollout_id: int, *auth: str) -> Iterator[subprocess.Popen[str]]:
    """``rollouts wait`` in the background; ended if the test fails before it does."""
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetctl",
            *auth,
            "rollouts",
            "wait",
            str(rollout_id),
            "--interval",
            "0.2",
        ],
        env=fleet.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as waiting:
        try:
            yield waiting
        finally:
            if waiting.poll() is None:
                waiting.kill()


def test_create_list_show_pause_resume_abort(fleet: Fleet):
    for i in range(3):
        fleet.enroll(f"RO{i:03d}")
    created = fleet.json(
        "rollouts",
        "create",
        "spring",
        "--kind",
        "os",
        "--version",
        "1.1.0",
        "--canary",
        "1",
        "--stages",
        "50,100",
        "--hardware",
        "pi4",
    )
    assert created["selector"]["hardware"] == ["pi4"]
    assert created["stages"] == [50, 100]
    listed = fleet.json("rollouts", "list")
    assert [r["name"] for r in listed] == ["spring"]
    assert "spring" in fleet.ok("rollouts", "list", "--state", created["state"])
    assert fleet.json("rollouts", "list", "--state", "completed") == []
    assert fleet.json("rollouts", "pause", str(created["id"]))["state"] == "paused"
    assert fleet.json("rollouts", "resume", str(created["id"]))["state"] == "running"
    assert "aborted" in fleet.ok("rollouts", "abort", str(created["id"]))
    stopped = fleet.run("rollouts", "wait", str(created["id"]))
    assert "was aborted" in one_line_error(stopped, after_progress=True)
    assert "no rollout 999" in one_line_error(fleet.run("rollouts", "show", "999"))


def test_wait_exits_non_zero_when_the_rollout_halts(fleet: Fleet):
    for i in range(2):
        fleet.enroll(f"RH{i:03d}")
    rollout = fleet.json(
        "rollouts", "create", "bad", "--kind", "os", "--version", "1.1.0", "--stages", "100"
    )
    with _wait(fleet, rollout["id"], "--url", fleet.url, "--token", fleet.admin) as waiting:
        assert waiting.stderr is not None
        first = waiting.stderr.readline()  # it follows the rollout before the engine moves
        fleet.tick()
        (canary,) = _admitted(fleet, rollout["id"])
        reason = "trial boot: health check docker.service failed"
        _report(fleet, canary, EventKind.ROLLBACK, reason)
        fleet.tick()
        out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 1, err
    assert first.startswith(f"rollout {rollout['id']} bad: running, canary, 0/0 succeeded")
    lines = err.strip().splitlines()
    assert f"rollout {rollout['id']} bad: halted" in err
    assert lines[-2].startswith(f"fleetctl: error: rollout {rollout['id']} halted: ")
    assert "docker.service failed" in lines[-2]
    assert lines[-1].startswith("fleetctl: hint: inspect it with")
    assert "Traceback" not in err and out == ""


def _release_day(fleet: Fleet) -> None:
    """Login once, group the devices, roll 1.1.0 out to the group, wait for completion."""
    assert (
        fleet.run("login", "--url", fleet.url, "--token", fleet.admin, auth=False).returncode == 0
    )
    devices = [fleet.enroll(f"RD{i:03d}") for i in range(3)]
    other = fleet.enroll("RDX")
    assert fleet.run("groups", "create", "cameras", auth=False).returncode == 0
    for device in devices:
        assert fleet.run("devices", "move-group", device, "cameras", auth=False).returncode == 0
    created = fleet.run(
        "rollouts",
        "create",
        "cams-1.1.0",
        "--kind",
        "os",
        "--version",
        "1.1.0",
        "--group",
        "cameras",
        "--stages",
        "100",
        "--success-window",
        "0",
        "--json",
        auth=False,
    )
    assert created.returncode == 0, created.stderr
    rollout_id = int(json.loads(created.stdout)["id"])
    done: set[str] = set()
    with _wait(fleet, rollout_id) as waiting:
        for _ in range(4):
            fleet.tick()
            for device in set(_admitted(fleet, rollout_id)) - done:
                _report(fleet, device, EventKind.UPDATE_COMMITTED)
                done.add(device)
        out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert out.strip() == f"rollout {rollout_id} completed"
    assert f"rollout {rollout_id} cams-1.1.0: completed" in err
    assert done == set(devices) and other not in done
    final = fleet.json("rollouts", "show", str(rollout_id))
    assert final["state"] == "completed" and final["devices"]["succeeded"] == 3


def test_release_day_on_sqlite(fleet: Fleet):
    _release_day(fleet)


@pytest.mark.integration
def test_release_day_on_postgresql(pg_fleet: Fleet):
    _release_day(pg_fleet)
