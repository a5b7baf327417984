"""The harness's exception tree: one root, subtrees by origin."""

from __future__ import annotations

from fleetcore.errors import FleetError


class HarnessError(FleetError):
    """The QEMU harness could not do what a test asked."""


class DiskError(HarnessError):
    """The disk image's partition table or a FAT file on it could not be read or written."""


class AutobootError(HarnessError):
    """autoboot.txt is not in the firmware's format."""


class GuestAssetError(HarnessError):
    """A Debian arm64 package for the test guest could not be fetched or unpacked."""


class QemuError(HarnessError):
    """QEMU could not be started or watched."""
