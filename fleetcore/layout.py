"""The A/B disk contract shared by the image builder, the device agent and the tests.

Six GPT partitions in this order, found by PARTLABEL: ``config`` (autoboot.txt, fleet.yaml),
``boot_a``, ``boot_b`` (firmware, kernel, initramfs per slot), ``system_a``, ``system_b``
(the read-only root filesystems) and ``data`` (the writable partition). The firmware knows
slots only by boot partition number: 2 is slot a, 3 is slot b. ``autoboot.txt`` names the
committed slot under ``[all]`` and the other under ``[tryboot]``, so it follows from the
committed slot alone. See docs/architecture.md ("Disk layout", "Boot, trial and fallback").
"""

from __future__ import annotations

from enum import StrEnum


class Slot(StrEnum):
    A = "a"
    B = "b"

    @property
    def other(self) -> Slot:
        return Slot.B if self is Slot.A else Slot.A


CONFIG_LABEL = "config"
DATA_LABEL = "data"
_BOOT_PARTITION = {Slot.A: 2, Slot.B: 3}


def slot_label(kind: str, slot: Slot) -> str:
    """PARTLABEL of a slot's partition of ``kind`` (``boot`` or ``system``): ``system_b``."""
    return f"{kind}_{slot.value}"


def boot_label(slot: Slot) -> str:
    return slot_label("boot", slot)


def system_label(slot: Slot) -> str:
    return slot_label("system", slot)


# Disk order: partition N is LABELS[N - 1].
LABELS = (
    CONFIG_LABEL,
    boot_label(Slot.A),
    boot_label(Slot.B),
    system_label(Slot.A),
    system_label(Slot.B),
    DATA_LABEL,
)


def boot_partition(slot: Slot) -> int:
    """The partition number the firmware boots for ``slot``."""
    return _BOOT_PARTITION[slot]


def slot_of_boot_partition(number: int) -> Slot | None:
    """The slot whose boot partition is ``number``; ``None`` for any other partition."""
    for slot, boot in _BOOT_PARTITION.items():
        if boot == number:
            return slot
    return None


def autoboot_txt(committed: Slot = Slot.A) -> str:
    """autoboot.txt for the Raspberry Pi firmware: boot the committed slot, tryboot the other."""
    return (
        "[all]\n"
        "tryboot_a_b=1\n"
        f"boot_partition={boot_partition(committed)}\n"
        "[tryboot]\n"
        f"boot_partition={boot_partition(committed.other)}\n"
    )
