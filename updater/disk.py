"""The boot disk and its partitions, found by PARTLABEL, as byte ranges to read and write.

One layer for both kinds of disk: a real disk (``/dev/mmcblk0``, a loop device with
partitions) where each partition has its own device node, and a GPT disk image file where a
partition is a byte range at the offset ``sfdisk -J`` reports.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.layout import LABELS, Slot, slot_label
from fleetcore.run import run
from updater.errors import ActiveSlotError, DiskError
from updater.paths import Roots


@dataclass(frozen=True)
class Partition:
    label: str
    number: int
    path: Path
    offset: int
    size: int

    def overlaps(self, other: Partition) -> bool:
        if os.path.realpath(self.path) != os.path.realpath(other.path):
            return False
        return self.offset < other.offset + other.size and other.offset < self.offset + self.size


class PartitionIO:
    """Positional I/O confined to one partition's byte range."""

    def __init__(self, partition: Partition, *, writable: bool) -> None:
        self.partition = partition
        flags = os.O_RDWR if writable else os.O_RDONLY
        try:
            self.fd = os.open(partition.path, flags | os.O_CLOEXEC)
        except OSError as err:
            raise DiskError(
                f"cannot open {partition.label} ({partition.path}): {err.strerror}"
            ) from err
        self.writable = writable

    def _check(self, pos: int, length: int) -> None:
        if pos < 0 or pos + length > self.partition.size:
            raise DiskError(
                f"{self.partition.label}: access at {pos}+{length} is outside the partition "
                f"({self.partition.size} bytes)"
            )

    def read(self, pos: int, length: int) -> bytes:
        self._check(pos, length)
        data = os.pread(self.fd, length, self.partition.offset + pos)
        if len(data) != length:
            raise DiskError(f"{self.partition.label}: short read at {pos}")
        return data

    def write(self, pos: int, data: bytes | memoryview) -> None:
        self._check(pos, len(data))
        view = memoryview(data)
        while view:
            done = os.pwrite(self.fd, view, self.partition.offset + pos)
            view, pos = view[done:], pos + done

    def sync(self) -> None:
        os.fsync(self.fd)

    def drop_cache(self, pos: int, length: int) -> None:
        """Evict a range from the page cache, so the next read comes from the medium.

        A read-back that hits the pages the writer just filled proves nothing about the
        card; after a flush, POSIX_FADV_DONTNEED drops those (now clean) pages.
        """
        self._check(pos, length)
        os.fdatasync(self.fd)
        os.posix_fadvise(self.fd, self.partition.offset + pos, length, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> PartitionIO:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class BootDisk:
    path: Path
    partitions: dict[str, Partition]

    @classmethod
    def open(cls, path: Path) -> BootDisk:
        """Read the GPT of a disk or disk image with ``sfdisk -J``."""
        try:
            table = json.loads(run(["sfdisk", "-J", str(path)]).stdout)["partitiontable"]
        except CommandError as err:
            raise DiskError(f"cannot read the partition table of {path}: {err}") from err
        except (ValueError, KeyError) as err:
            raise DiskError(f"sfdisk gave unexpected output for {path}") from err
        sector = int(table.get("sectorsize", 512))
        is_block = stat.S_ISBLK(path.stat().st_mode)
        found: dict[str, Partition] = {}
        for entry in table.get("partitions", []):
            label = entry.get("name")
            if label not in LABELS:
                continue
            node = Path(entry["node"])
            number = int(str(entry["node"])[len(str(path)) :].lstrip("p") or 0)
            size = int(entry["size"]) * sector
            if is_block and node.exists() and stat.S_ISBLK(node.stat().st_mode):
                found[label] = Partition(label, number, node, 0, size)
            else:
                found[label] = Partition(label, number, path, int(entry["start"]) * sector, size)
        missing = [label for label in LABELS if label not in found]
        if missing:
            raise DiskError(
                f"{path} lacks partitions labelled {', '.join(missing)}",
                hint="the disk must follow the Metrica Fleet GPT layout (docs/architecture.md)",
            )
        return cls(path, found)

    def slot_partition(self, kind: str, slot: Slot) -> Partition:
        return self.partitions[slot_label(kind, slot)]

    def open_for_write(self, target: Partition, *, active: Slot, roots: Roots) -> PartitionIO:
        """Open an inactive-slot partition; refuse anything that is, or overlaps, the running one.

        Checked two ways: by the booted slot the firmware reports, and physically, against
        the active slot's byte ranges and the device the running root is mounted from.
        """
        active_parts = [self.slot_partition(kind, active) for kind in ("boot", "system")]
        if target.label.endswith(f"_{active.value}") or any(
            target.overlaps(p) for p in active_parts
        ):
            raise ActiveSlotError(f"refusing to write {target.label}: slot {active} is running")
        if target.offset == 0 and target.path.exists():
            rdev = target.path.stat().st_rdev
            if rdev and rdev == roots.root.stat().st_dev:
                raise ActiveSlotError(f"refusing to write {target.path}: it holds the running root")
        return PartitionIO(target, writable=True)


def find_boot_disk(roots: Roots) -> Path:
    """The disk the device runs from, as a device node below ``roots.dev``.

    First the disk holding the partition the root filesystem is mounted from (its ``st_dev``
    through ``/sys/dev/block``): on a Pi that is the running system partition, so a second
    card with the same labels in a USB reader is never taken for the boot disk. When the root
    is not on a partition (an overlay, a simulator's directory), the disk holding the
    partition labelled ``data`` through udev's ``/dev/disk/by-partlabel``.
    """
    disk = _disk_of_root(roots)
    if disk is not None:
        return disk
    by_label = roots.by_partlabel / "data"
    try:
        node = by_label.resolve(strict=True)
    except OSError as err:
        raise DiskError(
            f"no partition labelled data ({by_label})", hint="set disk: in updater.yaml"
        ) from err
    parent = _parent_disk(roots.sys / "class" / "block" / node.name)
    if parent is None:
        raise DiskError(f"cannot find the disk that holds {node}")
    # The disk node sits beside the partition node udev links to (/dev/mmcblk0p6 -> mmcblk0).
    return node.parent / parent


def _parent_disk(sys_entry: Path) -> str | None:
    """The kernel name of the disk a partition's sysfs entry belongs to."""
    try:
        resolved = sys_entry.resolve(strict=True)
    except OSError:
        return None
    if not (resolved / "partition").is_file():
        return None
    return resolved.parent.name


def _disk_of_root(roots: Roots) -> Path | None:
    st_dev = roots.root.stat().st_dev
    entry = roots.sys / "dev" / "block" / f"{os.major(st_dev)}:{os.minor(st_dev)}"
    parent = _parent_disk(entry)
    if parent is None:
        return None
    node = roots.dev / parent
    try:
        is_block = stat.S_ISBLK(node.stat().st_mode)
    except OSError:
        return None
    return node if is_block else None
