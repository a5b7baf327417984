"""A bootloader release rolls out with the staged rollout machinery: the release list shows
it, a rollout points the devices of its family at it (DesiredState.bootloader), and the
device's bootloader events decide each device's outcome and the halt threshold."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from fleetcore.release import Hardware
from fleetcore.wire import DesiredState, EventKind
from overlord.cli import main
from overlord.db import unit_of_work, utcnow
from overlord.rollouts import service as rollouts_service
from signing.bootloader import publish_bootloader
from tests.overlord.conftest import Overlord, events, heartbeat, register_device
from tests.overlord.tufrepo import Repo
from tests.updater.eeprom_board import eeprom_image

PI4_2024_04_15 = 1713186734
VERSION = "2024.4.15.47534"


@pytest.fixture
def repo(repo: Repo) -> Repo:
    image = repo.path.parent / "pieeprom.bin"
    image.write_bytes(eeprom_image(Hardware.PI4, PI4_2024_04_15))
    recovery = repo.path.parent / "recovery.bin"
    recovery.write_bytes(b"recovery")
    publish_bootloader(
        repo.path, repo.keys, family=Hardware.PI4, image_path=image, recovery_path=recovery
    )
    return repo


def _tick(overlord: Overlord, *, later_s: float = 0) -> None:
    with unit_of_work(overlord.ctx.sessions) as session:
        rollouts_service.tick(session, now=utcnow() + timedelta(seconds=later_s))


def _desired(overlord: Overlord, device_id: str, auth: dict[str, str]) -> DesiredState:
    resp = overlord.client.get(f"/api/v1/devices/{device_id}/desired-state", headers=auth)
    return DesiredState.model_validate(resp.json())


def test_the_release_list_shows_bootloader_releases(overlord: Overlord) -> None:
    listed = overlord.client.get(
        "/api/v1/releases", params={"kind": "bootloader"}, headers=overlord.as_admin()
    ).json()
    assert [(r["name"], r["version"], r["hardware"], r["target"]) for r in listed] == [
        ("bootloader", VERSION, ["pi4"], f"bootloader/pi4/{VERSION}/pieeprom.bin")
    ]


def test_a_bootloader_rollout_reaches_its_family_and_completes(overlord: Overlord) -> None:
    fleet = {}
    for i in range(2):
        device_id, auth = overlord.enroll(f"BR{i}", hostname=f"pi-{i}")
        overlord.client.post(
            f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(), headers=auth
        )
        fleet[device_id] = auth
    body = {"name": "eeprom", "kind": "bootloader", "version": VERSION, "stages": [100]}
    resp = overlord.client.post("/api/v1/rollouts", json=body, headers=overlord.as_admin())
    assert resp.status_code == 201, resp.text
    rollout = resp.json()
    _tick(overlord)
    targeted = [
        d
        for d, auth in fleet.items()
        if (b := _desired(overlord, d, auth).bootloader) is not None and str(b.version) == VERSION
    ]
    assert len(targeted) == 1  # the canary
    device_id = targeted[0]
    assert _desired(overlord, device_id, fleet[device_id]).os is None
    overlord.client.post(
        f"/api/v1/devices/{device_id}/events",
        json=events(
            (1, EventKind.BOOTLOADER_STAGED, VERSION, None),
            (2, EventKind.BOOTLOADER_UPDATED, VERSION, None),
        ),
        headers=fleet[device_id],
    )
    _tick(overlord)
    _tick(overlord, later_s=3600)
    for other, auth in fleet.items():
        if other != device_id:
            assert str(_desired(overlord, other, auth).bootloader.version) == VERSION  # type: ignore[union-attr]
            overlord.client.post(
                f"/api/v1/devices/{other}/events",
                json=events((1, EventKind.BOOTLOADER_UPDATED, VERSION, None)),
                headers=auth,
            )
    _tick(overlord)
    _tick(overlord, later_s=7200)
    final = overlord.client.get(
        f"/api/v1/rollouts/{rollout['id']}", headers=overlord.as_admin()
    ).json()
    assert final["state"] == "completed", final
    assert final["devices"]["succeeded"] == 2


def test_a_refused_bootloader_counts_as_a_failure(overlord: Overlord) -> None:
    device_id, auth = overlord.enroll("BR9")
    overlord.client.post(f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(), headers=auth)
    body = {"name": "eeprom", "kind": "bootloader", "version": VERSION, "stages": [100]}
    rollout = overlord.client.post(
        "/api/v1/rollouts", json=body, headers=overlord.as_admin()
    ).json()
    _tick(overlord)
    overlord.client.post(
        f"/api/v1/devices/{device_id}/events",
        json=events((1, EventKind.BOOTLOADER_FAILED, VERSION, "the bootloader is older")),
        headers=auth,
    )
    _tick(overlord)
    halted = overlord.client.get(
        f"/api/v1/rollouts/{rollout['id']}", headers=overlord.as_admin()
    ).json()
    assert halted["state"] == "halted"
    assert "the bootloader is older" in halted["halt_reason"]


def test_the_overlord_cli_lists_and_rolls_out_a_bootloader_release(
    tmp_path: Path, repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OVERLORD_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("OVERLORD_REPO_DIR", str(repo.path))
    monkeypatch.setenv("OVERLORD_KEYS_DIR", str(repo.keydir))
    assert main(["db", "upgrade"]) == 0
    register_device(f"sqlite:///{tmp_path / 'cli.db'}", serial="EEPROM1")  # a rollout needs one
    capsys.readouterr()
    assert main(["release", "list", "--kind", "bootloader"]) == 0
    assert [r["version"] for r in json.loads(capsys.readouterr().out)] == [VERSION]
    assert main(["rollout", "create", "eeprom", "--kind", "bootloader", "--version", VERSION]) == 0
    created = json.loads(capsys.readouterr().out)
    assert (created["kind"], created["target"]) == (
        "bootloader",
        f"bootloader/pi4/{VERSION}/pieeprom.bin",
    )
