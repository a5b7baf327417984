"""What the fleet needs from a board's EEPROM bootloader: the minimum versions, and the verdict.

A bootloader version is its build timestamp (``BUILD_TIMESTAMP`` inside the EEPROM image,
``timestamp`` in ``vcgencmd bootloader_version``, ``chosen/bootloader/build-timestamp`` in the
device tree): seconds since the epoch, UTC. rpi-eeprom names its images by build date
(``pieeprom-2023-05-11.bin``); ``firmware-2711/versions.txt`` and ``firmware-2712/versions.txt``
in raspberrypi/rpi-eeprom map each to its timestamp, and the table below quotes them.

Read by the device (``updater.bootloader``: is this board's bootloader good enough for A/B
updates) and by the Overlord (offer a bootloader release before an OS release).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from fleetcore.release import Hardware


class TrybootSupport(StrEnum):
    """Whether the running bootloader does tryboot A/B the way the fleet needs it."""

    SUPPORTED = "supported"
    BELOW_MINIMUM = "below-minimum"  # a bootloader update must come before any OS update
    UNKNOWN = "unknown"  # no bootloader read (QEMU, or the tools failed)


@dataclass(frozen=True)
class EepromRelease:
    """One rpi-eeprom image: its name date and the build timestamp inside it."""

    name: str  # pieeprom-YYYY-MM-DD
    timestamp: int
    why: str


@dataclass(frozen=True)
class Minimums:
    tryboot_ab: EepromRelease
    secure_boot: EepromRelease
    # The first release whose image supports the A/B EEPROM (rpi-eeprom-ab); None: never
    # (the Pi 4's 512 KiB flash has no room for two copies).
    ab_eeprom: EepromRelease | None


# Sources: rpi-eeprom firmware-2711/release-notes.md and firmware-2712/release-notes.md for
# the reason, versions.txt beside them for the timestamp. docs/boards.md discusses the choice.
MINIMUMS: dict[Hardware, Minimums] = {
    Hardware.PI4: Minimums(
        # tryboot_a_b came with 2022-10-18 (beta) / 2022-11-25 (default); 2023-05-11 "Fix hang
        # in secure-boot init" is the conservative floor issue 19 asks for.
        tryboot_ab=EepromRelease(
            "pieeprom-2023-05-11", 1683786363, "tryboot_a_b and every secure-boot init fix"
        ),
        secure_boot=EepromRelease(
            "pieeprom-2024-04-15", 1713186734, "Fix tryboot mode in secure-boot"
        ),
        ab_eeprom=None,
    ),
    Hardware.PI5: Minimums(
        # Every Pi 5 bootloader (the first, 2023-09-13) has tryboot_a_b.
        tryboot_ab=EepromRelease("pieeprom-2023-09-13", 1694601426, "Initial release"),
        secure_boot=EepromRelease(
            "pieeprom-2024-04-17", 1713358463, "Fix TRYBOOT flag in secure-boot mode"
        ),
        ab_eeprom=EepromRelease(
            "pieeprom-2026-05-13", 1778671631, "Add support for A/B bootloader updates"
        ),
    ),
}


def minimum(family: Hardware, *, secure_boot: bool) -> EepromRelease | None:
    """The oldest bootloader a board of ``family`` may run the fleet's A/B updates on; None
    for a family without an EEPROM (QEMU)."""
    floors = MINIMUMS.get(family)
    if floors is None:
        return None
    return floors.secure_boot if secure_boot else floors.tryboot_ab


def tryboot_support(
    family: Hardware, timestamp: int | None, *, secure_boot: bool
) -> TrybootSupport:
    """The verdict on a bootloader of build ``timestamp`` (None: unknown)."""
    floor = minimum(family, secure_boot=secure_boot)
    if floor is None or timestamp is None:
        return TrybootSupport.UNKNOWN
    return (
        TrybootSupport.SUPPORTED if timestamp >= floor.timestamp else TrybootSupport.BELOW_MINIMUM
    )


def build_date(timestamp: int) -> str:
    """``2023-05-11 06:26:03`` (UTC), how operators and rpi-eeprom's names read a version."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
