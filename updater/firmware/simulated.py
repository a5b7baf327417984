"""The simulated firmware shared with the QEMU harness and the fleet simulator.

Contract, all on the config partition mount (``/boot/config``):

- ``simfw/boot.json`` = ``{"boot_partition": N, "tryboot": bool}``, written by the firmware
  before each boot; the device reads its boot state from it. ``"signed": true`` when the
  firmware played a bootloader in signed-boot mode and verified the slot's boot.sig (the
  simulated ``chosen/bootloader/signed``); absent means false.
- The device requests a one-shot trial boot by creating ``simfw/tryboot`` (atomically, the
  FAT filesystem flushed: :func:`fleetcore.atomic.atomic_write_fat`), then reboots with the
  configured command.
- At the next boot the firmware deletes ``simfw/tryboot`` and, if it was there, boots
  autoboot.txt's ``[tryboot]`` partition, else ``[all]``. After a power cut, crash or
  watchdog reset the flag is dropped unused (the real one is volatile).
- A firmware that plays an EEPROM bootloader (the QEMU harness's ``SimulatedEeprom``) writes,
  before each boot, ``simfw/bootloader_version`` (what ``vcgencmd bootloader_version``
  prints) and ``simfw/eeprom_config`` (what ``rpi-eeprom-config`` prints); the device reads
  its bootloader from them instead of the tools, and stages updates on the config partition
  as on a Pi. Without them the device has no bootloader to manage.

:func:`firmware_boot` is that firmware side, for harnesses written in Python.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fleetcore import eeprom
from fleetcore.atomic import atomic_write, atomic_write_fat, mkdir_fat, remove_fat
from fleetcore.release import Hardware
from fleetcore.run import run
from updater import autoboot
from updater.bootloader.probe import Bootloader, parse
from updater.errors import BootloaderError, FirmwareError
from updater.firmware.base import BootState, Firmware

STATE_DIR = "simfw"
BOOT_FILE = "boot.json"
TRYBOOT_FLAG = "tryboot"
BOOTLOADER_VERSION_FILE = "bootloader_version"
EEPROM_CONFIG_FILE = "eeprom_config"


def _read_boot_file(path: Path) -> BootState:
    try:
        raw = json.loads(path.read_bytes())
        partition, tryboot = raw["boot_partition"], raw["tryboot"]
        signed = raw.get("signed", False)
    except FileNotFoundError as err:
        raise FirmwareError(f"{path} is missing: the simulated firmware did not boot us") from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FirmwareError(f"{path} is not a simulated firmware boot record: {err}") from err
    if not isinstance(partition, int) or not isinstance(tryboot, bool):
        raise FirmwareError(f"{path}: boot_partition must be an integer and tryboot a boolean")
    if not isinstance(signed, bool):
        raise FirmwareError(f"{path}: signed must be a boolean")
    return BootState(boot_partition=partition, tryboot=tryboot, signed=signed)


def firmware_boot(config_mount: Path, *, requested_reboot: bool = True) -> BootState:
    """Play the firmware at a boot: consume the tryboot flag, pick and record a partition.

    ``requested_reboot`` is False after a power cut, crash or watchdog reset: the real flag
    lives in RAM and is lost then, so the file is dropped unused.
    """
    state_dir = config_mount / STATE_DIR
    mkdir_fat(state_dir)
    flag = state_dir / TRYBOOT_FLAG
    tryboot = flag.exists() and requested_reboot
    remove_fat(flag)
    data = (config_mount / "autoboot.txt").read_bytes()
    state = BootState(boot_partition=autoboot.partition_for(data, tryboot=tryboot), tryboot=tryboot)
    record = {"boot_partition": state.boot_partition, "tryboot": state.tryboot}
    atomic_write_fat(state_dir / BOOT_FILE, json.dumps(record).encode())
    return state


def eeprom_power_on(
    config_mount: Path, flash: Path, family: Hardware, *, boot_order: str = "0xf41"
) -> str:
    """Play a board's EEPROM at power-on, before :func:`firmware_boot`: the ROM runs a
    ``recovery.bin`` staged on the config partition (``fleetcore.eeprom.recovery_flash``:
    the host file ``flash`` is the SPI flash; recovery.bin renames itself ``recovery.000``
    once it has flashed), then the firmware publishes what the running bootloader reports.
    Returns one line saying what the ROM did ("" when nothing was staged)."""
    current = eeprom.load_image(flash.read_bytes(), family)
    action = ""
    recovery = config_mount / "recovery.bin"
    if recovery.exists():
        staged = [config_mount / name for name in ("pieeprom.upd", "pieeprom.sig")]
        upd, sig = (p.read_bytes() if p.exists() else None for p in staged)
        flashed, action = eeprom.recovery_flash(current, upd, sig)
        if flashed is not current:
            atomic_write(flash, flashed.data)
            atomic_write_fat(config_mount / "recovery.000", recovery.read_bytes())
            remove_fat(recovery)
            current = flashed
    state_dir = config_mount / STATE_DIR
    mkdir_fat(state_dir)
    atomic_write_fat(state_dir / BOOTLOADER_VERSION_FILE, eeprom.version_output(current))
    atomic_write_fat(state_dir / EEPROM_CONFIG_FILE, f"[all]\nBOOT_ORDER={boot_order}\n".encode())
    return action


class SimulatedFirmware(Firmware):
    @property
    def _state_dir(self) -> Path:
        return self.roots.boot_config / STATE_DIR

    def boot_state(self) -> BootState:
        return _read_boot_file(self._state_dir / BOOT_FILE)

    def simulated_eeprom(self) -> Callable[[], Bootloader] | None:
        if not (self._state_dir / BOOTLOADER_VERSION_FILE).exists():
            return None
        return self._read_eeprom

    def _read_eeprom(self) -> Bootloader:
        try:
            version = (self._state_dir / BOOTLOADER_VERSION_FILE).read_bytes()
            config = (self._state_dir / EEPROM_CONFIG_FILE).read_bytes()
        except OSError as err:
            raise BootloaderError(f"cannot read the simulated bootloader: {err}") from err
        return parse(version, config)

    def request_trial_reboot(self) -> None:
        mkdir_fat(self._state_dir)
        atomic_write_fat(self._state_dir / TRYBOOT_FLAG, b"1\n")
        run(list(self.config.reboot_command))
