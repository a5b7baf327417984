"""The firmware's slot mapping (fleetcore.layout) with the agent's error for a foreign partition."""

from __future__ import annotations

from fleetcore.layout import Slot, boot_partition, slot_of_boot_partition
from updater.errors import FirmwareError

__all__ = ["boot_partition", "other", "slot_of"]


def slot_of(partition: int) -> Slot:
    slot = slot_of_boot_partition(partition)
    if slot is None:
        raise FirmwareError(
            f"booted from partition {partition}, which is neither boot_a "
            f"({boot_partition(Slot.A)}) nor boot_b ({boot_partition(Slot.B)})"
        )
    return slot


def other(slot: Slot) -> Slot:
    return slot.other
