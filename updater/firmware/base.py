"""The firmware interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from fleetcore.layout import Slot
from fleetcore.run import run
from updater.bootloader.probe import Bootloader
from updater.config import FirmwareConfig
from updater.paths import Roots
from updater.slots import slot_of


@dataclass(frozen=True)
class BootState:
    """What the firmware booted: a boot partition number, whether it was a trial boot, and
    whether the bootloader ran in signed-boot mode (it checked boot.sig over boot.img)."""

    boot_partition: int
    tryboot: bool
    signed: bool = False

    @property
    def slot(self) -> Slot:
        return slot_of(self.boot_partition)


class Firmware(ABC):
    def __init__(self, config: FirmwareConfig, roots: Roots) -> None:
        self.config = config
        self.roots = roots

    @abstractmethod
    def boot_state(self) -> BootState:
        """The partition this boot came from and the one-shot tryboot flag."""

    @abstractmethod
    def request_trial_reboot(self) -> None:
        """Reboot once into autoboot.txt's ``[tryboot]`` partition."""

    def simulated_eeprom(self) -> Callable[[], Bootloader] | None:
        """How to read an EEPROM bootloader the firmware plays itself (the QEMU harness);
        None: a real board's bootloader is read with Raspberry Pi's tools, and a machine
        without one has none."""
        return None

    def reboot(self) -> None:
        """Reboot normally, into autoboot.txt's ``[all]`` partition."""
        run(list(self.config.reboot_command))
