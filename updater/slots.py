"""Slot mapping shared by every firmware backend: boot partition 2 is slot a, 3 is slot b."""

from __future__ import annotations

from fleetcore.wire import Slot
from updater.errors import FirmwareError

_BOOT_PARTITION = {Slot.A: 2, Slot.B: 3}
_SLOT_OF = {number: slot for slot, number in _BOOT_PARTITION.items()}


def boot_partition(slot: Slot) -> int:
    return _BOOT_PARTITION[slot]


def slot_of(partition: int) -> Slot:
    try:
        return _SLOT_OF[partition]
    except KeyError as err:
        raise FirmwareError(
            f"booted from partition {partition}, which is neither boot_a (2) nor boot_b (3)"
        ) from err


def other(slot: Slot) -> Slot:
    return Slot.B if slot is Slot.A else Slot.A


def partition_label(kind: str, slot: Slot) -> str:
    """PARTLABEL of a slot's partition: ``boot_a``, ``system_b``."""
    return f"{kind}_{slot.value}"
