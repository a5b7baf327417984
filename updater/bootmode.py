"""The running root's verification: the boot mode the heartbeat reports, and corruption that
dm-verity found since boot.

The mode comes from what the boot left behind: ``/proc/cmdline`` names a verity root
(``fleet.verity=``, which the initramfs opened as ``/dev/mapper/fleet-root``), and the firmware
backend says whether the bootloader ran in signed-boot mode (on a Pi the
``chosen/bootloader/signed`` device-tree property, Raspberry Pi documentation, "Device Trees":
a 32-bit big-endian bit field whose bit 0 says the bootloader checked boot.sig over boot.img;
the simulated firmware's ``boot.json``). Verity errors are not fatal on a
running system (ADR 0071): the read fails with EIO and ``dmsetup status`` shows ``C``
(corrupted) from then on, which the agent reports.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fleetcore.errors import CommandError, FormatError
from fleetcore.run import run_text
from fleetcore.verity import MAPPER_NAME, from_cmdline
from fleetcore.wire import BootMode
from updater.paths import Roots

log = logging.getLogger(__name__)

_SIGNED = Path("chosen/bootloader/signed")
_SIGNED_BOOT_BIT = 1 << 0
_MAX_CMDLINE = 8192


def verity_root(roots: Roots) -> bool:
    """Whether the kernel command line the device booted with names a verity root."""
    try:
        with (roots.proc / "cmdline").open("rb") as handle:
            text = handle.read(_MAX_CMDLINE).decode("utf-8", "replace")
        return from_cmdline(text) is not None
    except (OSError, FormatError):
        return False  # a malformed argument cannot have opened a root: the initramfs refuses it


def secure_boot(device_tree: Path) -> bool:
    """Whether the bootloader booted in signed-boot mode (bit 0 of chosen/bootloader/signed)."""
    try:
        with (device_tree / _SIGNED).open("rb") as handle:
            raw = handle.read(4)
    except OSError:
        return False
    return len(raw) == 4 and bool(int.from_bytes(raw, "big") & _SIGNED_BOOT_BIT)


def boot_mode(roots: Roots, *, signed: bool) -> BootMode:
    """Secure boot (``signed``, from the firmware backend) counts only with a verity root:
    without one the root is not pinned."""
    if not verity_root(roots):
        return BootMode.UNSIGNED
    return BootMode.SECURE_VERITY if signed else BootMode.VERITY


def corrupted(name: str = MAPPER_NAME) -> bool:
    """Whether dm-verity refused a block of the device ``name`` (the running root) since it was
    opened: ``dmsetup status`` ends in ``C``, ``V`` while every block read verified."""
    try:
        status = run_text(["dmsetup", "status", name])
    except CommandError as err:
        log.warning("cannot read the verity root's status: %s", err)
        return False
    return status.split()[-1:] == ["C"]
