from __future__ import annotations

import json

import pytest

from fleetcore.layout import Slot
from updater.autoboot import Autoboot
from updater.config import FirmwareBackend, FirmwareConfig
from updater.errors import FirmwareError
from updater.firmware import open_firmware
from updater.firmware.simulated import firmware_boot
from updater.paths import Roots


@pytest.fixture
def roots(tmp_path):
    roots = Roots(
        root=tmp_path / "root",
        boot_config=tmp_path / "config",
        device_tree=tmp_path / "dt",
        data=tmp_path / "data",
    )
    roots.boot_config.mkdir()
    roots.autoboot.write_bytes(Autoboot(Slot.A).render())
    return roots


def tryboot_config(tmp_path, name="trial-requested"):
    return FirmwareConfig(
        backend=FirmwareBackend.TRYBOOT,
        reboot_command=("touch", str(tmp_path / "rebooted")),
        tryboot_command=("touch", str(tmp_path / name)),
    )


def test_tryboot_reads_the_device_tree(tmp_path, roots):
    bootloader = roots.device_tree / "chosen" / "bootloader"
    bootloader.mkdir(parents=True)
    (bootloader / "partition").write_bytes((3).to_bytes(4, "big"))
    (bootloader / "tryboot").write_bytes((1).to_bytes(4, "big"))
    firmware = open_firmware(tryboot_config(tmp_path), roots)
    state = firmware.boot_state()
    assert (state.boot_partition, state.tryboot, state.slot) == (3, True, Slot.B)
    firmware.request_trial_reboot()
    assert (tmp_path / "trial-requested").exists()
    firmware.reboot()
    assert (tmp_path / "rebooted").exists()


def test_tryboot_without_the_bootloader_node_explains(tmp_path, roots):
    with pytest.raises(FirmwareError, match="chosen/bootloader/partition") as err:
        open_firmware(tryboot_config(tmp_path), roots).boot_state()
    assert "EEPROM bootloader" in (err.value.hint or "")


def test_tryboot_rejects_a_malformed_cell(tmp_path, roots):
    bootloader = roots.device_tree / "chosen" / "bootloader"
    bootloader.mkdir(parents=True)
    (bootloader / "partition").write_bytes(b"\x02")
    with pytest.raises(FirmwareError, match="big-endian u32"):
        open_firmware(tryboot_config(tmp_path), roots).boot_state()


def test_simulated_contract_round_trip(tmp_path, roots):
    config = FirmwareConfig(
        backend=FirmwareBackend.SIMULATED, reboot_command=("touch", str(tmp_path / "rebooted"))
    )
    firmware = open_firmware(config, roots)
    assert firmware_boot(roots.boot_config).boot_partition == 2
    record = json.loads((roots.boot_config / "simfw" / "boot.json").read_text())
    assert record == {"boot_partition": 2, "tryboot": False}

    firmware.request_trial_reboot()
    assert (roots.boot_config / "simfw" / "tryboot").exists()
    assert (tmp_path / "rebooted").exists()
    state = firmware_boot(roots.boot_config)
    assert (state.boot_partition, state.tryboot) == (3, True)
    assert not (roots.boot_config / "simfw" / "tryboot").exists()  # one-shot
    assert firmware.boot_state().slot is Slot.B
    assert firmware_boot(roots.boot_config).boot_partition == 2  # power cycle: back to [all]
    firmware.request_trial_reboot()
    lost = firmware_boot(roots.boot_config, requested_reboot=False)  # power cut before reboot
    assert (lost.boot_partition, lost.tryboot) == (2, False)
    assert not (roots.boot_config / "simfw" / "tryboot").exists()


def test_simulated_without_boot_record_explains(tmp_path, roots):
    firmware = open_firmware(FirmwareConfig(backend=FirmwareBackend.SIMULATED), roots)
    with pytest.raises(FirmwareError, match="did not boot us"):
        firmware.boot_state()
