"""The bootloader update on /data (``/data/fleet/bootloader.json``), saved before each step.

``pending`` is a staged update waiting for the reboot that applies it; ``failed`` the builds
that did not take (not staged again until a newer one comes). An unreadable file is set aside
and read as empty: the EEPROM itself says what runs, and a staged update left on the config
partition is cleaned up by the next verification.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetcore.atomic import atomic_write
from fleetcore.errors import FormatError
from fleetcore.persisted import FileFormat, dump, load, set_aside
from fleetcore.wire import EepromTimestamp

log = logging.getLogger(__name__)

FORMAT = FileFormat(1, 1)


class Method(StrEnum):
    RECOVERY = "recovery"  # recovery.bin + pieeprom.upd/.sig on the config partition
    AB = "ab"  # rpi-eeprom-ab into the Pi 5's other EEPROM partition


class Pending(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: EepromTimestamp
    previous: EepromTimestamp
    method: Method
    boot_id: str = Field(max_length=64, description="the boot that staged it")
    rebooted: bool = False


class BootloaderState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pending: Pending | None = None
    failed: list[EepromTimestamp] = Field(default_factory=list, max_length=64)


class BootloaderStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> BootloaderState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return BootloaderState()
        try:
            return BootloaderState.model_validate(load(raw, current=FORMAT, what=str(self.path)))
        except (FormatError, ValidationError) as err:
            aside = set_aside(self.path)
            log.error("bootloader: %s is unreadable (%s); set aside as %s", self.path, err, aside)
            return BootloaderState()

    def save(self, state: BootloaderState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, dump(state.model_dump(mode="json"), current=FORMAT))
