"""Issue 19's bootloader story on the real image (ADR 0078): a board whose harness-played
EEPROM holds bootloader X (pieeprom-2023-05-11) moves to Y (pieeprom-2024-04-15) through a
bootloader rollout, and then refuses a rollout back to X.

One board, two boots, shared: the first enrols and reports X; once the Overlord shows it, the
test starts the rollout of Y, and the agent stages Y on the config partition and reboots.
At the second power-on the harness's boot ROM flashes Y (``harness.eeprom``), the agent
verifies it (``bootloader-updated``), the rollout completes, and the rollout of X that the
test then starts is refused on the device (``bootloader-failed``: never downgraded).

The same board then serves issue 21's remote access on the real image (ADR 0074, 0083): its
owner's ``fleet.yaml`` allows shells, and at a third power-on ``fleetctl shell`` runs
``cat /etc/metrica-fleet/version`` on the guest and ``fleetctl logs`` reads its journal.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness.board import Deadlines, SimulatedPi
from harness.eeprom import SimulatedEeprom
from harness.qemu import End, MachineSpec, PowerCut, loopback_service
from product import card, images, tool
from product.overlord import Overlord
from product.signing import Repository

from fleetcore import eeprom
from fleetcore.release import Hardware
from fleetcore.run import run
from tests.updater.eeprom_board import eeprom_image

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(3600)]

HEALTHY_MARKER = "Welcome to "
DEADLINES = Deadlines(watchdog=300.0, session=1200.0)
X = 1683786363  # pieeprom-2023-05-11
Y = 1713186734  # pieeprom-2024-04-15
REMOTE_SHELL_ALLOWED = "remote:\n  shell: true\n"  # the owner's veto lifted (logs: on anyway)


@dataclass
class Fleet:
    session: Path
    overlord: Overlord
    disk: Path
    versions: dict[int, str] = field(default_factory=dict)
    board: SimulatedPi | None = None  # the first scenario's, for the next


def _publish(repo: Repository, workdir: Path, timestamp: int) -> str:
    image = workdir / f"pieeprom-{timestamp}.bin"
    image.write_bytes(eeprom_image(Hardware.PI4, timestamp))
    recovery = workdir / "recovery.bin"
    recovery.write_bytes(b"recovery.bin stand-in: the harness plays the boot ROM")
    run([tool("fleet-sign"), "add-bootloader", repo.repo, image, recovery,
         "--hardware", "pi4", "--keys", repo.keys])  # fmt: skip
    return str(eeprom.release_version(timestamp))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = images.workdir(tmp_path_factory)
    repo = Repository.init(workdir)
    session = workdir / "session"
    session.mkdir()
    overlord = Overlord(session, repo.repo, repo.keys)
    rootfs = images.build_rootfs(workdir, repo.root_json)
    release = images.assemble(rootfs, workdir, "1.0.0")
    repo.add_release(release.release_dir, "1.0.0")
    versions = {stamp: _publish(repo, session, stamp) for stamp in (X, Y)}
    overlord.start()
    try:
        yield Fleet(session, overlord, release.disk, versions)
    finally:
        overlord.stop()


def _rollout(overlord: Overlord, name: str, version: str) -> dict:
    created: dict = overlord.post(
        "/rollouts",
        {"name": name, "kind": "bootloader", "version": version, "stages": [100],
         "success_window_s": 0, "failure_threshold": 1.0},
    )  # fmt: skip
    return created


class Story:
    """Conditions polled during the boots (``PowerCut(when=...)``); each starts the next
    rollout once the Overlord shows the device ready for it."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.upgrade: dict | None = None
        self.downgrade: dict | None = None

    def _device(self) -> dict | None:
        found = self.fleet.overlord.the_device()
        return None if found is None else self.fleet.overlord.device(found["id"])

    def _kinds(self, device_id: str) -> list[tuple[str, str | None]]:
        return [(e["kind"], e.get("reason")) for e in self.fleet.overlord.events(device_id)]

    def reports_x_then_upgrade(self) -> bool:
        """Never cuts: the boot ends when the agent reboots to apply Y."""
        device = self._device()
        if self.upgrade is None and device and (device.get("bootloader") or {}).get("version") == X:
            self.upgrade = _rollout(self.fleet.overlord, "eeprom-y", self.fleet.versions[Y])
        return False

    def updated_then_downgrade_refused(self) -> bool:
        device = self._device()
        if device is None:
            return False
        kinds = self._kinds(device["id"])
        if self.downgrade is None:
            if not any(kind == "bootloader-updated" for kind, _ in kinds):
                return False
            assert self.upgrade is not None
            done = self.fleet.overlord.get(f"/rollouts/{self.upgrade['id']}")
            if done["state"] != "completed":
                return False
            self.downgrade = _rollout(self.fleet.overlord, "eeprom-x", self.fleet.versions[X])
        return any(kind == "bootloader-failed" for kind, _ in kinds)


def test_a_bootloader_rollout_moves_the_board_from_x_to_y_and_back_is_refused(fleet: Fleet):
    disk = card.flash(
        fleet.disk,
        fleet.session / "card.img",
        fleet.overlord.token("enrollment"),
        extra=REMOTE_SHELL_ALLOWED,
    )
    flash = SimulatedEeprom(
        fleet.session / "flash.bin", Hardware.PI4, image=eeprom_image(Hardware.PI4, X)
    )
    pi = SimulatedPi(
        disk,
        fleet.session / "board",
        healthy_marker=HEALTHY_MARKER,
        deadlines=DEADLINES,
        spec=MachineSpec(extra_args=loopback_service(fleet.overlord.port)),
        eeprom=flash,
    )
    fleet.board = pi
    story = Story(fleet)

    first = pi.boot(power_cut=PowerCut(when=story.reports_x_then_upgrade, label="never"))
    print(first.line())
    assert first.end is End.REBOOT, pi.decisions()
    assert story.upgrade is not None

    second = pi.boot(
        power_cut=PowerCut(when=story.updated_then_downgrade_refused, label="downgrade refused")
    )
    print(second.line())
    assert second.eeprom.startswith("recovery.bin flashed the EEPROM: 2023-05-11"), pi.decisions()
    assert second.end is End.POWER_CUT, pi.decisions()
    assert flash.running.timestamp == Y

    device = fleet.overlord.the_device()
    assert device is not None
    shown = fleet.overlord.device(device["id"])
    assert shown["bootloader"]["version"] == Y
    refusals = [
        e["reason"] for e in fleet.overlord.events(device["id"]) if e["kind"] == "bootloader-failed"
    ]
    assert refusals and "never downgraded" in refusals[0], refusals
    assert story.downgrade is not None
    rows = fleet.overlord.get(f"/rollouts/{story.downgrade['id']}/devices")
    assert [r["outcome"] for r in rows] == ["failed"]


class Remote:
    """``fleetctl shell``, then ``fleetctl logs``, against the guest, the first once the
    device has reported after its third power-on; done when both have ended."""

    def __init__(self, fleet: Fleet, device_id: str, workdir: Path) -> None:
        self.fleet = fleet
        self.device_id = device_id
        self.workdir = workdir
        self.started = fleet.overlord.device(device_id)["last_seen"]
        self.runs: dict[str, subprocess.Popen[bytes]] = {}

    def _fleetctl(self, name: str, args: list[str], typed: bytes | None = None) -> None:
        env = {
            **os.environ,
            "FLEET_URL": self.fleet.overlord.url,
            "FLEET_TOKEN": self.fleet.overlord.token("admin"),
        }
        with (self.workdir / f"{name}.out").open("wb") as out:
            self.runs[name] = subprocess.Popen(
                [tool("fleetctl"), *args],
                stdin=subprocess.PIPE if typed is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if typed is not None:
            assert self.runs[name].stdin is not None
            self.runs[name].stdin.write(typed)
            self.runs[name].stdin.close()

    def done(self) -> bool:
        """One session at a time (the desired state names one): the shell, then the logs."""
        if not self.runs:
            if self.fleet.overlord.device(self.device_id)["last_seen"] == self.started:
                return False  # the agent has not reported since this power-on
            self.fleet.overlord.put(
                f"/config/devices/{self.device_id}/FLEET_REMOTE_SHELL", {"value": "1"}
            )
            typed = b"cat /etc/metrica-fleet/version; exit 3\n"
            self._fleetctl("shell", ["shell", self.device_id], typed)
            return False
        if "logs" not in self.runs:
            if self.runs["shell"].poll() is None:
                return False
            unit = ["--unit", "fleet-updater.service", "--lines", "5"]
            self._fleetctl("logs", ["logs", self.device_id, *unit])
            return False
        return self.runs["logs"].poll() is not None

    def output(self, name: str) -> tuple[int | None, str]:
        return self.runs[name].returncode, (self.workdir / f"{name}.out").read_text(
            errors="replace"
        )


def test_fleetctl_shell_and_logs_reach_the_guest(fleet: Fleet) -> None:
    """Issue 21 on the real image: the board of the scenario above (its owner allows shells)
    powers on a third time; once it has reported, the admin allows shells for it and runs
    ``fleetctl shell`` (stdin ``cat /etc/metrica-fleet/version; exit 3``), then ``fleetctl
    logs``. The device joins both through the long-poll, the shell prints the version and
    exits 3 (fleetctl's own status), the log tail prints the agent's journal, and the
    session's recording holds what was typed."""
    assert fleet.board is not None, "the bootloader scenario sets up the board"
    device = fleet.overlord.the_device()
    assert device is not None
    remote = Remote(fleet, device["id"], fleet.session)
    record = fleet.board.boot(power_cut=PowerCut(when=remote.done, label="shell and logs ended"))
    print(record.line())
    assert record.end is End.POWER_CUT, fleet.board.decisions()

    status, shell = remote.output("shell")
    print(f"fleetctl shell ({status}):\n{shell}")
    assert status == 3, shell
    assert "1.0.0" in shell.split("cat /etc/metrica-fleet/version", 1)[-1]
    status, logs = remote.output("logs")
    print(f"fleetctl logs ({status}):\n{logs}")
    assert status == 0, logs
    assert "fleet-updater" in logs
    [session] = [
        s
        for s in fleet.overlord.get(f"/devices/{device['id']}/remote-sessions")
        if s["kind"] == "shell"
    ]
    cast = fleet.overlord.get_text(f"/remote-sessions/{session['id']}/recording")
    assert "cat /etc/metrica-fleet/version" in cast
