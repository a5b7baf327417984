"""docs/operations.md, "Release day with fleetctl": every ``fleet-sign`` and ``fleetctl``
command of the section runs, in order, as its own process, against a real Overlord whose
scheduler starts the scheduled rollout, with a simulated fleet answering its desired state
(the first device admitted fails its trial, the rest commit). Only placeholders are replaced.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import zstandard

from fleetcore.wire import EventKind, UpdateState
from overlord import migrate
from overlord.db import make_engine, utcnow
from tests.fleetctl.conftest import Fleet, _serve
from tests.fleetctl.test_publish import _offline_copy, _release
from tests.overlord.conftest import events, heartbeat

DOC = Path(__file__).parents[2] / "docs" / "operations.md"
SECTION = "## Release day with fleetctl"
VERSION = "1.5.0"
FLEET_SIGN = "import sys; from signing.cli import main; sys.exit(main())"
# Exit codes other than 0, by command, in the order they run.
EXPECTED = {"fleetctl rollouts wait 42": [1, 0]}


def walkthrough() -> list[str]:
    """The section's indented command lines, continuations joined, comments dropped."""
    text = DOC.read_text()
    section = text[text.index(SECTION) :]
    end = section.find("\n## ", len(SECTION))
    section = section if end < 0 else section[:end]
    commands, current = [], ""
    for line in section.splitlines():
        if not line.startswith("    "):
            continue
        current += line.strip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        command = re.sub(r"\s+#.*$", "", current).strip()
        if command.startswith(("fleetctl ", "fleet-sign ")):
            commands.append(command)
        current = ""
    return commands


class SimulatedFleet(threading.Thread):
    """Devices that follow their desired state: the first one told to install VERSION rolls
    back, every later one commits."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(daemon=True)
        self.fleet = fleet
        self.failed: str | None = None
        self.reported: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for device_id, auth in list(self.fleet.devices.items()):
                if device_id not in self.reported and self._told_to_install(device_id, auth):
                    self._report(device_id, auth)

    def _told_to_install(self, device_id: str, auth: dict[str, str]) -> bool:
        url = f"{self.fleet.url}/api/v1/devices/{device_id}/desired-state"
        answer = httpx.get(url, headers=auth)
        return (
            answer.status_code == 200 and (answer.json().get("os") or {}).get("version") == VERSION
        )

    def _report(self, device_id: str, auth: dict[str, str]) -> None:
        base = f"{self.fleet.url}/api/v1/devices/{device_id}"
        self.reported.add(device_id)
        if self.failed is None:
            self.failed = device_id
            reason = "trial boot: health check docker.service failed"
            httpx.post(
                f"{base}/events",
                json=events((1, EventKind.ROLLBACK, VERSION, reason)),
                headers=auth,
            )
            return
        httpx.post(
            f"{base}/events",
            json=events((1, EventKind.UPDATE_COMMITTED, VERSION, None)),
            headers=auth,
        )
        httpx.post(
            f"{base}/heartbeat", json=heartbeat(VERSION, state=UpdateState.COMMITTED), headers=auth
        )


@pytest.fixture
def scheduled_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A served Overlord that runs its own scheduler (the rollout engine) twice a second."""
    url = f"sqlite:///{tmp_path / 'overlord.db'}"
    migrate.upgrade(make_engine(url))
    yield from _serve(
        url, tmp_path, OVERLORD_RUN_SCHEDULER="true", OVERLORD_ENGINE_INTERVAL_S="0.5"
    )


def _placeholders(fleet: Fleet, work: Path, devices: dict[str, str]) -> dict[str, str]:
    start = utcnow() + timedelta(seconds=3)
    return {
        "https://overlord.example.com": fleet.url,
        "2026-12-05T06:00:00+01:00": start.isoformat(),
        "2026-12-05T18:00:00+01:00": (start + timedelta(hours=8)).isoformat(),
        # A stage's success window of 15 minutes, shortened so the test does not wait it out.
        "--success-window 900": "--success-window 0",
        "REPO": str(work / "offline" / "repo"),
    } | devices


def _prepare(fleet: Fleet, work: Path) -> dict[str, str]:
    """The signing machine's repository and release, the role bundle, and four cameras."""
    _offline_copy(fleet, work / "offline")
    (work / "build").mkdir()
    _release(work / "build", VERSION).rename(work / "build" / "release")
    bundle = zstandard.ZstdCompressor().compress(b"a camera role bundle")
    (work / "camera-2.1.0.tar.zst").write_bytes(bundle)
    ids = {name: fleet.enroll(name.upper()) for name in ("c1", "c2", "c3", "c4")}
    # dev-9f8e7d, the failing device, is known only once one fails: filled in then.
    return {"dev-1a2b3c": ids["c1"], "dev-5c6d7e": ids["c3"], "dev-0a0b0c": ids["c4"]}


def _argv(command: str) -> list[str]:
    program, *args = shlex.split(command)
    if program == "fleet-sign":
        return [sys.executable, "-c", FLEET_SIGN, *args]
    return [sys.executable, "-m", "fleetctl", *args]


def test_every_command_of_the_release_day_walkthrough_runs(scheduled_fleet: Fleet, tmp_path: Path):
    fleet = scheduled_fleet
    commands = walkthrough()
    assert len(commands) >= 25, commands
    work = tmp_path / "laptop"
    work.mkdir()
    devices = _prepare(fleet, work)
    swaps = _placeholders(fleet, work, devices)
    env = fleet.env(FLEET_URL=fleet.url, FLEET_TOKEN=fleet.admin)
    env["FLEET_SIGN_KEYS"] = str(work / "offline" / "keys")
    expected = {k: list(v) for k, v in EXPECTED.items()}
    simulated = SimulatedFleet(fleet)
    simulated.start()
    try:
        for command in commands:
            code = expected[command].pop(0) if expected.get(command) else 0
            # Ids first: the times put in next may contain "42" or "17".
            line = re.sub(r"\b42\b", "1", command)  # the first rollout
            if re.search(r"\b17\b", line):  # the token made in step 0
                line = re.sub(r"\b17\b", _token_id(fleet, "release manager"), line)
            if simulated.failed is not None:
                swaps["dev-9f8e7d"] = simulated.failed
            for placeholder, value in swaps.items():
                line = line.replace(placeholder, value)
            result = subprocess.run(
                _argv(line), cwd=work, env=env, capture_output=True, text=True, timeout=180
            )
            assert result.returncode == code, (command, line, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr, (command, result.stderr)
            if command == "fleetctl groups create cameras":  # the walkthrough moves one
                for device_id in devices.values():
                    fleet.ok("devices", "move-group", device_id, "cameras")
    finally:
        simulated.stop.set()
        simulated.join(timeout=10)
    assert all(not codes for codes in expected.values()), expected
    final = fleet.json("rollouts", "show", "1")
    assert final["state"] == "completed", final
    assert final["start_at"] is not None and final["deadline"] is not None
    updated = {u["device_id"]: u["outcome"] for u in final["device_updates"]}
    assert updated == {simulated.failed: "failed"} | {
        d: "succeeded" for d in set(updated) - {simulated.failed}
    }
    assert devices["dev-5c6d7e"] not in updated and devices["dev-0a0b0c"] not in updated
    actions = [e["action"] for e in fleet.json("audit", "list", "--object", "rollout/1")["items"]]
    assert actions == ["rollout.resume", "rollout.start", "rollout.create"]


def _token_id(fleet: Fleet, name: str) -> str:
    tokens = fleet.json("tokens", "list")
    (token_id,) = [str(t["id"]) for t in tokens if t["name"] == name]
    return token_id
