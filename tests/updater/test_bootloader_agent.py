"""The agent and the EEPROM bootloader: the heartbeat reports it, a bootloader below the
minimum is an event, and a staged update is verified after the reboot before anything else.
The board is a checked-in Pi 4 device tree with the simulated EEPROM's tools on PATH."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetcore.bootloader import TrybootSupport
from fleetcore.release import Hardware
from fleetcore.wire import EventKind, UpdateState
from signing.bootloader import publish_bootloader
from tests.updater.agents import make_agent, setup_device
from tests.updater.device import SimDevice
from tests.updater.eeprom_board import EepromBoard, eeprom_image, eeprom_sig
from tests.updater.releases import ReleaseRepo
from tests.updater.servers import FleetServer
from tests.updater.test_boards import family_repo, family_server, on_board
from updater.bootloader.update import BootloaderRelease
from updater.engine import EngineResult

__all__ = ["family_repo", "family_server"]  # fixtures used here

PI4_2022_11_25 = 1669373653
PI4_2023_05_11 = 1683786363


def reported(server: FleetServer) -> tuple[int | None, TrybootSupport, int | None]:
    report = server.heartbeats[-1].bootloader
    assert report is not None
    return report.version, report.tryboot_ab, report.pending


def old_pi4(
    base: Path, monkeypatch: pytest.MonkeyPatch, repo: ReleaseRepo, server: FleetServer
) -> tuple[EepromBoard, SimDevice]:
    """An enrolable Pi 4 running 1.0.0 whose EEPROM holds the 2022-11-25 bootloader."""
    board = EepromBoard(base / "board", Hardware.PI4, PI4_2022_11_25)
    monkeypatch.setenv("PATH", str(board.bin), prepend=os.pathsep)
    device = on_board(base / "device", repo, "pi4b-4gb-r1.5")
    setup_device(device, server)
    return board, device


def test_heartbeat_reports_the_bootloader_and_an_old_one_is_an_event(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    family_repo: ReleaseRepo,
    family_server: FleetServer,
) -> None:
    board, device = old_pi4(tmp_path, monkeypatch, family_repo, family_server)
    agent = make_agent(device)
    agent.cycle()
    assert reported(family_server) == (PI4_2022_11_25, TrybootSupport.BELOW_MINIMUM, None)
    assert family_server.heartbeats[-1].bootloader.boot_order == "0xf41"  # type: ignore[union-attr]
    kinds = [event["kind"] for event in family_server.events]
    assert kinds.count(EventKind.BOOTLOADER_BELOW_MINIMUM) == 1

    bootloader = agent.engine.bootloader
    assert bootloader is not None
    data = eeprom_image(board.family, PI4_2023_05_11)
    assert bootloader.install(BootloaderRelease(board.family, data, eeprom_sig(data), b"rec"))
    # Until the reboot happens, each cycle asks for it again and reports nothing else.
    assert agent.resume() is EngineResult.REBOOTING
    board.power_on(device.roots.boot_config)
    device.power_on(requested_reboot=False)
    agent = make_agent(device)
    agent.cycle()
    assert reported(family_server) == (PI4_2023_05_11, TrybootSupport.SUPPORTED, None)
    assert [e["kind"] for e in family_server.events][-2:] == [
        EventKind.BOOTLOADER_STAGED,
        EventKind.BOOTLOADER_UPDATED,
    ]


def test_a_bootloader_below_the_minimum_is_updated_before_the_os(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family_repo: ReleaseRepo
) -> None:
    """The desired state names an OS release and a bootloader release: the bootloader goes
    first (the OS waits while the bootloader is below the tryboot minimum), is verified after
    the reboot, and only then does the OS update start."""
    repo = family_repo.copy(tmp_path / "repo")
    image = repo.base / "pieeprom.bin"
    image.write_bytes(eeprom_image(Hardware.PI4, PI4_2023_05_11))
    (repo.base / "recovery.bin").write_bytes(b"recovery")
    version = publish_bootloader(
        repo.path,
        repo.keys,
        family=Hardware.PI4,
        image_path=image,
        recovery_path=repo.base / "recovery.bin",
    )
    server = FleetServer(repo.path)
    try:
        board, device = old_pi4(tmp_path, monkeypatch, repo, server)
        server.set_desired("2.0.0")
        server.desired["bootloader"] = {"version": str(version)}
        agent = make_agent(device)
        agent.cycle()
        assert agent.engine.store.load().state is UpdateState.IDLE  # the OS waits
        assert agent.engine.bootloader is not None
        pending = agent.engine.bootloader.pending()
        assert pending is not None and pending.target == PI4_2023_05_11

        board.power_on(device.roots.boot_config)
        device.power_on(requested_reboot=False)
        agent = make_agent(device)
        agent.cycle()
        assert board.running() == PI4_2023_05_11
        assert reported(server) == (PI4_2023_05_11, TrybootSupport.SUPPORTED, None)
        assert agent.engine.store.load().state is UpdateState.TRIAL_REBOOT  # now the OS
        kinds = [e["kind"] for e in server.events]
        assert EventKind.BOOTLOADER_UPDATED in kinds
    finally:
        server.close()


def test_without_a_bootloader_release_the_os_waits_below_the_minimum(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    family_repo: ReleaseRepo,
    family_server: FleetServer,
) -> None:
    _board, device = old_pi4(tmp_path, monkeypatch, family_repo, family_server)
    family_server.set_desired("2.0.0")
    agent = make_agent(device)
    agent.cycle()
    assert agent.engine.store.load().state is UpdateState.IDLE
    assert [e["kind"] for e in family_server.events].count(EventKind.BOOTLOADER_BELOW_MINIMUM) == 1


def test_no_bootloader_is_read_where_no_raspberry_pi_firmware_is_seen(
    tmp_path: Path, family_repo: ReleaseRepo, family_server: FleetServer
) -> None:
    """The QEMU tier and the simulator configure hardware: pi4 on a virt machine."""
    device = on_board(tmp_path / "device", family_repo, "qemu-virt", hardware="pi4")
    setup_device(device, family_server)
    agent = make_agent(device)
    assert agent.engine.bootloader is None
    agent.cycle()
    assert family_server.heartbeats[-1].bootloader is None
