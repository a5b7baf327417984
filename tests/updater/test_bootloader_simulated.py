"""The simulated firmware plays an EEPROM bootloader (as the QEMU harness does): a virt
machine configured ``hardware: pi4`` reads its bootloader from ``simfw/`` instead of
vcgencmd, stages a bootloader release on the config partition, and at the next power-on the
simulated ROM's recovery.bin flashes it: the device moves from X to Y, and refuses going
back to X. ``eeprom_power_on`` against a bad staged update leaves the EEPROM as it was."""

from __future__ import annotations

from pathlib import Path

from fleetcore import eeprom
from fleetcore.release import Hardware
from fleetcore.version import Version
from fleetcore.wire import EventKind
from signing.bootloader import publish_bootloader
from tests.updater.agents import make_agent, setup_device
from tests.updater.eeprom_board import eeprom_image, eeprom_sig
from tests.updater.releases import ReleaseRepo
from tests.updater.servers import FleetServer
from tests.updater.test_boards import family_repo, on_board
from updater.firmware.simulated import eeprom_power_on

__all__ = ["family_repo"]  # a fixture used here

X = 1683786363  # pieeprom-2023-05-11
Y = 1713186734  # pieeprom-2024-04-15


def _publish(repo: ReleaseRepo, timestamp: int) -> Version:
    image = repo.base / f"pieeprom-{timestamp}.bin"
    image.write_bytes(eeprom_image(Hardware.PI4, timestamp))
    (repo.base / "recovery.bin").write_bytes(b"recovery")
    return publish_bootloader(
        repo.path,
        repo.keys,
        family=Hardware.PI4,
        image_path=image,
        recovery_path=repo.base / "recovery.bin",
    )


def test_a_virt_machine_moves_from_x_to_y_and_refuses_x_again(
    tmp_path: Path, family_repo: ReleaseRepo
) -> None:
    repo = family_repo.copy(tmp_path / "repo")
    older, newer = _publish(repo, X), _publish(repo, Y)
    server = FleetServer(repo.path)
    try:
        device = on_board(tmp_path / "device", repo, "qemu-virt", hardware="pi4")
        flash = tmp_path / "flash.bin"
        flash.write_bytes(eeprom_image(Hardware.PI4, X))
        config = device.roots.boot_config
        assert eeprom_power_on(config, flash, Hardware.PI4) == ""
        setup_device(device, server)
        agent = make_agent(device)
        assert agent.engine.bootloader is not None
        agent.cycle()
        assert server.heartbeats[-1].bootloader is not None
        assert server.heartbeats[-1].bootloader.version == X

        server.desired["bootloader"] = {"version": str(newer)}
        agent.cycle()  # stages Y on the config partition and reboots
        assert {"pieeprom.upd", "pieeprom.sig", "recovery.bin"} <= {
            p.name for p in config.iterdir()
        }
        action = eeprom_power_on(config, flash, Hardware.PI4)
        assert (
            action == "recovery.bin flashed the EEPROM: 2023-05-11 06:26:03 -> 2024-04-15 13:12:14"
        )
        device.power_on()
        agent = make_agent(device)
        agent.cycle()
        assert server.heartbeats[-1].bootloader.version == Y
        assert not (config / "recovery.bin").exists() and not (config / "recovery.000").exists()
        assert EventKind.BOOTLOADER_UPDATED in [e["kind"] for e in server.events]

        server.desired["bootloader"] = {"version": str(older)}
        agent.cycle()
        failed = [e for e in server.events if e["kind"] == EventKind.BOOTLOADER_FAILED]
        assert len(failed) == 1 and "never downgraded" in str(failed[0]["reason"])
        assert not (config / "pieeprom.upd").exists()
        assert eeprom.load_image(flash.read_bytes(), Hardware.PI4).timestamp == Y
    finally:
        server.close()


def test_a_bad_staged_update_leaves_the_eeprom_unchanged(tmp_path: Path) -> None:
    config, flash = tmp_path / "config", tmp_path / "flash.bin"
    config.mkdir()
    flash.write_bytes(eeprom_image(Hardware.PI4, X))
    new = eeprom_image(Hardware.PI4, Y)
    (config / "recovery.bin").write_bytes(b"recovery")
    (config / "pieeprom.upd").write_bytes(new)
    assert "no pieeprom.upd with its pieeprom.sig" in eeprom_power_on(config, flash, Hardware.PI4)
    (config / "pieeprom.sig").write_bytes(eeprom_sig(eeprom_image(Hardware.PI4, X)))
    action = eeprom_power_on(config, flash, Hardware.PI4)
    assert action == (
        "recovery.bin refused pieeprom.upd: pieeprom.sig does not match the EEPROM image; "
        "EEPROM unchanged"
    )
    pi5 = eeprom_image(Hardware.PI5, Y)
    (config / "pieeprom.upd").write_bytes(pi5)
    (config / "pieeprom.sig").write_bytes(eeprom_sig(pi5))
    assert "the pi5 flash size" in eeprom_power_on(config, flash, Hardware.PI4)
    assert (config / "recovery.bin").exists()
    assert eeprom.load_image(flash.read_bytes(), Hardware.PI4).timestamp == X
    assert b"timestamp 1683786363\n" in (config / "simfw" / "bootloader_version").read_bytes()
