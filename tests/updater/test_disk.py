from __future__ import annotations

import pytest

from fleetcore.wire import Slot
from tests.updater.device import LAYOUT, make_disk
from updater.disk import BootDisk, PartitionIO
from updater.errors import ActiveSlotError, DiskError
from updater.paths import Roots


def test_partitions_found_by_label_with_offsets(tmp_path):
    make_disk(tmp_path / "disk.img")
    disk = BootDisk.open(tmp_path / "disk.img")
    assert [disk.partitions[label].number for label, _ in LAYOUT] == [1, 2, 3, 4, 5, 6]
    boot_a, boot_b = disk.partitions["boot_a"], disk.partitions["boot_b"]
    assert boot_b.offset == boot_a.offset + boot_a.size
    assert boot_a.size == 2 << 20


def test_the_active_slot_is_never_opened_for_writing(tmp_path):
    make_disk(tmp_path / "disk.img")
    disk = BootDisk.open(tmp_path / "disk.img")
    roots = Roots(root=tmp_path)
    for kind in ("boot", "system"):
        with pytest.raises(ActiveSlotError, match="slot a is running"):
            disk.open_for_write(disk.slot_partition(kind, Slot.A), active=Slot.A, roots=roots)
    disk.open_for_write(disk.slot_partition("system", Slot.B), active=Slot.A, roots=roots).close()


def test_io_stays_inside_the_partition(tmp_path):
    make_disk(tmp_path / "disk.img")
    disk = BootDisk.open(tmp_path / "disk.img")
    part = disk.partitions["boot_b"]
    with PartitionIO(part, writable=True) as io:
        io.write(part.size - 4, b"tail")
        assert io.read(part.size - 4, 4) == b"tail"
        with pytest.raises(DiskError, match="outside the partition"):
            io.write(part.size - 2, b"tail")
    assert (tmp_path / "disk.img").read_bytes()[part.offset + part.size - 4 :][:4] == b"tail"


def test_a_disk_without_the_layout_is_refused(tmp_path):
    image = tmp_path / "blank.img"
    image.write_bytes(b"\0" * (1 << 20))
    with pytest.raises(DiskError):
        BootDisk.open(image)
