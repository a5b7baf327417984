"""Read the running bootloader with Raspberry Pi's own tools, and say what the heartbeat says.

``vcgencmd bootloader_version`` and ``rpi-eeprom-config`` (both in Raspberry Pi OS's
raspi-utils and rpi-eeprom packages; tests put fakes on PATH) run with a deadline through
``fleetcore.run``; their output is parsed strictly (``version``, ``settings``). A failure
becomes the heartbeat report's ``error`` (``update.BootloaderUpdater.report``), never an
exception out of the heartbeat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fleetcore.bootloader import minimum, tryboot_support
from fleetcore.errors import CommandError
from fleetcore.release import Hardware
from fleetcore.run import run
from fleetcore.wire import BootloaderReport
from updater.bootloader import settings, version
from updater.errors import BootloaderError

log = logging.getLogger(__name__)

TOOL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Bootloader:
    version: version.BootloaderVersion
    settings: settings.EepromSettings


def read() -> Bootloader:
    """The running bootloader, or :class:`BootloaderError` saying why it cannot be read."""
    return parse(_tool("vcgencmd", "bootloader_version"), _tool("rpi-eeprom-config"))


def parse(version_output: bytes, config_output: bytes) -> Bootloader:
    """The bootloader from what ``vcgencmd bootloader_version`` and ``rpi-eeprom-config``
    print (the tools on a Pi; the simulated firmware's files in the QEMU tier)."""
    return Bootloader(version=version.parse(version_output), settings=settings.parse(config_output))


def _tool(*argv: str) -> bytes:
    try:
        return run(list(argv), timeout=TOOL_TIMEOUT_S).stdout
    except CommandError as err:
        log.warning("cannot read the bootloader: %s", err)
        raise BootloaderError(f"cannot read the bootloader: {err}") from err


def verdict(family: Hardware, found: Bootloader, *, pending: int | None = None) -> BootloaderReport:
    secure = found.settings.secure_boot
    floor = minimum(family, secure_boot=secure)
    return BootloaderReport(
        version=found.version.timestamp,
        boot_order=found.settings.boot_order,
        secure_boot=secure,
        tryboot_ab=tryboot_support(family, found.version.timestamp, secure_boot=secure),
        minimum=floor.timestamp if floor else None,
        pending=pending,
    )
