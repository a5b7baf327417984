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

:func:`firmware_boot` is that firmware side, for harnesses written in Python.
"""

from __future__ import annotations

import json
from pathlib import Path

from fleetcore.atomic import atomic_write_fat, mkdir_fat, remove_fat
from fleetcore.run import run
from updater import autoboot
from updater.errors import FirmwareError
from updater.firmware.base import BootState, Firmware

STATE_DIR = "simfw"
BOOT_FILE = "boot.json"
TRYBOOT_FLAG = "tryboot"


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


class SimulatedFirmware(Firmware):
    @property
    def _state_dir(self) -> Path:
        return self.roots.boot_config / STATE_DIR

    def boot_state(self) -> BootState:
        return _read_boot_file(self._state_dir / BOOT_FILE)

    def request_trial_reboot(self) -> None:
        mkdir_fat(self._state_dir)
        atomic_write_fat(self._state_dir / TRYBOOT_FLAG, b"1\n")
        run(list(self.config.reboot_command))
