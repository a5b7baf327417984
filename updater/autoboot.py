"""``autoboot.txt`` on the config partition: which boot partition the firmware starts.

``[all]`` names the committed slot, ``[tryboot]`` the other one; the firmware picks
``[tryboot]`` only for the one boot after ``reboot '0 tryboot'``. So the whole file follows
from the committed slot, and committing a slot is one crash-safe rewrite of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetcore.atomic import atomic_write_fat
from fleetcore.layout import Slot, autoboot_txt
from updater.errors import FirmwareError
from updater.slots import other, slot_of

MAX_SIZE = 512  # the firmware reads at most this many bytes of autoboot.txt


@dataclass(frozen=True)
class Autoboot:
    committed: Slot

    @property
    def trial(self) -> Slot:
        return other(self.committed)

    def render(self) -> bytes:
        return autoboot_txt(self.committed).encode()


def parse(data: bytes) -> dict[str, dict[str, str]]:
    """Sections of an autoboot.txt as the firmware reads them: ``[section]`` then key=value."""
    if len(data) > MAX_SIZE:
        raise FirmwareError(f"autoboot.txt is {len(data)} bytes; the firmware reads {MAX_SIZE}")
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("all", {})
    for raw in data.decode("ascii", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise FirmwareError(f"autoboot.txt: line {raw!r} is neither [section] nor key=value")
        current[key.strip()] = value.strip()
    return sections


def partition_for(data: bytes, *, tryboot: bool) -> int:
    """The boot partition the firmware picks from this autoboot.txt."""
    sections = parse(data)
    chosen = sections.get("tryboot", {}) if tryboot else {}
    value = chosen.get("boot_partition") or sections.get("all", {}).get("boot_partition")
    if value is None or not value.isdigit():
        raise FirmwareError("autoboot.txt names no boot_partition")
    return int(value)


def read(path: Path) -> Autoboot:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FirmwareError(f"cannot read {path}: {err.strerror}") from err
    sections = parse(data)
    if sections.get("all", {}).get("tryboot_a_b") != "1":
        raise FirmwareError(f"{path} lacks tryboot_a_b=1 in [all]; A/B boot is not enabled")
    return Autoboot(committed=slot_of(partition_for(data, tryboot=False)))


def write(path: Path, autoboot: Autoboot) -> None:
    """Replace autoboot.txt crash-safely: the firmware sees the old file or the new one.

    The config partition is FAT, so the write flushes the whole filesystem around the rename
    (:func:`fleetcore.atomic.atomic_write_fat`).
    """
    data = autoboot.render()
    try:
        if path.exists() and path.read_bytes() == data:
            return
        atomic_write_fat(path, data)
    except OSError as err:
        raise FirmwareError(f"cannot rewrite {path}: {err.strerror}") from err
