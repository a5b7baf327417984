"""The harness's EEPROM (no QEMU: the card's boot partitions are missing, so each boot ends
unbootable right after the boot ROM and the firmware ran): a staged update whose
pieeprom.sig matches is flashed at the next power-on and the guest's files report the new
version, as the updater's simulated firmware reads them; a bad one leaves the EEPROM."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import autoboot
from harness.board import SimulatedPi
from harness.disk import FatVolume, fat_volume
from harness.eeprom import CONFIG_FILE, VERSION_FILE, SimulatedEeprom
from harness.qemu import End
from harness.testdisk import HEALTHY_MARKER, fat_card

from fleetcore import eeprom
from fleetcore.release import Hardware
from tests.updater.eeprom_board import eeprom_image, eeprom_sig
from updater.bootloader import probe

X = 1683786363  # pieeprom-2023-05-11
Y = 1713186734  # pieeprom-2024-04-15


@pytest.fixture
def config(tmp_path: Path) -> FatVolume:
    card = fat_card(tmp_path / "card.img", [("config", 4)])
    volume = fat_volume(card, label="config")
    volume.write("autoboot.txt", autoboot.render(committed=2, trial=3))
    return volume


def _board(config: FatVolume, tmp_path: Path) -> SimulatedPi:
    flash = SimulatedEeprom(
        tmp_path / "flash.bin", Hardware.PI4, image=eeprom_image(Hardware.PI4, X)
    )
    return SimulatedPi(
        config.image, tmp_path / "board", healthy_marker=HEALTHY_MARKER, eeprom=flash
    )


def _guest_sees(config: FatVolume) -> int:
    version, settings = config.read(VERSION_FILE), config.read(CONFIG_FILE)
    assert version is not None and settings is not None
    found = probe.parse(version, settings)
    assert found.settings.boot_order == "0xf41"
    return found.version.timestamp


def _stage(config: FatVolume, image: bytes, sig: bytes) -> None:
    config.write("pieeprom.upd", image)
    config.write("recovery.bin", b"recovery")
    config.write("pieeprom.sig", sig)


def test_a_staged_update_is_flashed_at_the_next_power_on(config: FatVolume, tmp_path: Path):
    pi = _board(config, tmp_path)
    first = pi.boot()
    assert (first.end, first.eeprom) == (End.UNBOOTABLE, "")
    assert _guest_sees(config) == X
    new = eeprom_image(Hardware.PI4, Y)
    _stage(config, new, eeprom_sig(new))

    second = pi.boot()

    assert second.eeprom == (
        "recovery.bin flashed the EEPROM: 2023-05-11 06:26:03 -> 2024-04-15 13:12:14"
    )
    assert "boot ROM: recovery.bin flashed" in pi.console(second)
    assert pi.eeprom is not None and pi.eeprom.running.timestamp == Y
    assert _guest_sees(config) == Y
    assert not config.exists("recovery.bin") and config.exists("recovery.000")
    third = pi.boot()  # recovery.000 is not run again
    assert third.eeprom == "" and _guest_sees(config) == Y


@pytest.mark.parametrize(
    ("image", "sig", "words"),
    [
        (Y, X, "pieeprom.sig does not match the EEPROM image"),
        (Y, None, "pieeprom.sig does not start"),
    ],
)
def test_a_bad_staged_update_leaves_the_eeprom(
    config: FatVolume, tmp_path: Path, image: int, sig: int | None, words: str
):
    pi = _board(config, tmp_path)
    new = eeprom_image(Hardware.PI4, image)
    _stage(config, new, eeprom_sig(eeprom_image(Hardware.PI4, sig)) if sig else b"unsigned\n")

    record = pi.boot()

    assert words in record.eeprom and "EEPROM unchanged" in record.eeprom
    assert _guest_sees(config) == X
    assert config.exists("recovery.bin")
    assert eeprom.load_image((tmp_path / "flash.bin").read_bytes(), Hardware.PI4).timestamp == X
