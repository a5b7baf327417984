"""The board's EEPROM bootloader as the harness plays it (issue 19, ADR 0078).

The SPI flash is a file on the host. At every power-on, before the firmware picks a
partition, the boot ROM runs a ``recovery.bin`` staged on the config partition: when
``pieeprom.upd`` is an image for the board that ``pieeprom.sig`` names, it is "flashed" (the
host file replaced) and recovery.bin renames itself ``recovery.000``; otherwise the EEPROM is
unchanged (``fleetcore.eeprom.recovery_flash``, the rules shared with the updater's simulated
firmware). Then the firmware publishes the running bootloader on the config partition:
``simfw/bootloader_version`` is what ``vcgencmd bootloader_version`` prints and
``simfw/eeprom_config`` what ``rpi-eeprom-config`` prints, which the guest's updater reads
through its simulated firmware backend (``updater.firmware.simulated``).
"""

from __future__ import annotations

from pathlib import Path

from fleetcore import eeprom
from fleetcore.release import Hardware
from harness.disk import FatVolume

VERSION_FILE = "simfw/bootloader_version"
CONFIG_FILE = "simfw/eeprom_config"


class SimulatedEeprom:
    """A board's SPI flash in ``flash`` (created with ``image`` when missing)."""

    def __init__(
        self, flash: Path, family: Hardware, *, image: bytes, boot_order: str = "0xf41"
    ) -> None:
        self.flash = flash
        self.family = family
        self.boot_order = boot_order
        if not flash.exists():
            eeprom.load_image(image, family)  # refuse a bad image before it is the flash
            flash.write_bytes(image)

    @property
    def running(self) -> eeprom.EepromImage:
        return eeprom.load_image(self.flash.read_bytes(), self.family)

    def power_on(self, config: FatVolume) -> str:
        """The ROM's recovery.bin, then what the firmware tells the guest; one line saying
        what the ROM did ("" when nothing was staged)."""
        current, action = self.running, ""
        recovery = config.read("recovery.bin")
        if recovery is not None:
            flashed, action = eeprom.recovery_flash(
                current, config.read("pieeprom.upd"), config.read("pieeprom.sig")
            )
            if flashed is not current:
                self.flash.write_bytes(flashed.data)
                config.write("recovery.000", recovery)
                config.delete("recovery.bin")
                current = flashed
        config.write(VERSION_FILE, eeprom.version_output(current))
        config.write(CONFIG_FILE, f"[all]\nBOOT_ORDER={self.boot_order}\n".encode())
        return action
