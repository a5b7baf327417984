"""Raspberry Pi EEPROM bootloader: state from the device tree, ``reboot '0 tryboot'``."""

from __future__ import annotations

from pathlib import Path

from fleetcore.run import run
from updater.bootmode import secure_boot
from updater.errors import FirmwareError
from updater.firmware.base import BootState, Firmware


def _read_be32(path: Path) -> int:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FirmwareError(
            f"cannot read {path}: {err.strerror}",
            hint="the tryboot backend needs a Raspberry Pi EEPROM bootloader with A/B support",
        ) from err
    if len(data) != 4:
        raise FirmwareError(f"{path} holds {len(data)} bytes, expected a big-endian u32")
    return int.from_bytes(data, "big")


class TrybootFirmware(Firmware):
    @property
    def _bootloader(self) -> Path:
        return self.roots.device_tree / "chosen" / "bootloader"

    def boot_state(self) -> BootState:
        return BootState(
            boot_partition=_read_be32(self._bootloader / "partition"),
            tryboot=_read_be32(self._bootloader / "tryboot") == 1,
            signed=secure_boot(self.roots.device_tree),
        )

    def request_trial_reboot(self) -> None:
        run(list(self.config.tryboot_command))
