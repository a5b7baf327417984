from __future__ import annotations

from pathlib import Path

import pytest

from fleetcore.layout import Slot
from fleetcore.run import run, run_text
from tests.updater.device import LAYOUT, make_disk
from updater.disk import BootDisk, PartitionIO, find_boot_disk
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


@pytest.mark.integration
def test_loop_device_disk(tmp_path, require_root):
    """The same layer on a real block device: a loop device over the GPT image."""
    image = tmp_path / "disk.img"
    make_disk(image)
    file_disk = BootDisk.open(image)
    loop = run_text(["losetup", "--find", "--show", "--partscan", str(image)]).strip()
    try:
        disk = BootDisk.open(Path(loop))
        target = disk.slot_partition("boot", Slot.B)
        # With partition nodes (udev) each partition is its own device at offset 0;
        # without them (containers) it is a byte range of the loop device.
        assert target.path == Path(f"{loop}p3") or (
            target.path == Path(loop) and target.offset == file_disk.partitions["boot_b"].offset
        )
        roots = Roots(root=tmp_path)
        with disk.open_for_write(target, active=Slot.A, roots=roots) as io:
            io.write(0, b"written through the block device")
            io.sync()
        with pytest.raises(ActiveSlotError):
            disk.open_for_write(disk.slot_partition("system", Slot.A), active=Slot.A, roots=roots)
    finally:
        run(["losetup", "--detach", loop])
    with PartitionIO(file_disk.partitions["boot_b"], writable=False) as io:
        assert io.read(0, 32) == b"written through the block device"


def fake_sysfs_partition(sys: Path, disk: str, part: str) -> None:
    """sysfs as the kernel lays it out: class/block/<part> links into the disk's folder."""
    folder = sys / "devices" / "platform" / "emmc" / "block" / disk / part
    folder.mkdir(parents=True)
    (folder / "partition").write_text("6\n")
    (sys / "class" / "block").mkdir(parents=True)
    (sys / "class" / "block" / part).symlink_to(folder)


def test_boot_disk_through_udev_partlabel_links(tmp_path):
    dev, sys = tmp_path / "dev", tmp_path / "sys"
    fake_sysfs_partition(sys, "mmcblk0", "mmcblk0p6")
    (dev / "disk" / "by-partlabel").mkdir(parents=True)
    (dev / "mmcblk0p6").touch()
    (dev / "disk" / "by-partlabel" / "data").symlink_to("../../mmcblk0p6")
    roots = Roots(root=tmp_path, dev=dev, sys=sys)  # the root is no partition here
    assert find_boot_disk(roots) == dev / "mmcblk0"


def test_no_boot_disk_says_how_to_name_it(tmp_path):
    roots = Roots(root=tmp_path, dev=tmp_path / "dev", sys=tmp_path / "sys")
    with pytest.raises(DiskError, match="no partition labelled data") as err:
        find_boot_disk(roots)
    assert err.value.hint == "set disk: in updater.yaml"
