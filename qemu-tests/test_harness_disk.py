"""Partition lookup and FAT access without mounting, on a small real GPT image."""

from __future__ import annotations

import pytest
from harness.disk import ext4_volume, fat_volume, partition, partitions
from harness.errors import DiskError
from harness.testdisk import fat_card

from fleetcore.run import run

MIB = 1024 * 1024


@pytest.fixture
def image(tmp_path):
    return fat_card(tmp_path / "disk.img", [("config", 4), ("boot_a", 6)])


def test_partitions_are_read_from_the_gpt(image):
    found = partitions(image)

    assert [(p.number, p.label) for p in found] == [(1, "config"), (2, "boot_a")]
    assert found[0].start == MIB
    assert found[1].size == 6 * MIB


def test_lookup_by_label_and_number(image):
    assert partition(image, label="boot_a").number == 2
    assert partition(image, number=1).label == "config"
    with pytest.raises(DiskError):
        partition(image, label="system_a")


def test_not_a_disk_image(tmp_path):
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 4096)

    with pytest.raises(DiskError):
        partitions(junk)


def test_fat_files_round_trip_in_their_own_partition(image, tmp_path):
    config = fat_volume(image, label="config")
    boot = fat_volume(image, label="boot_a")

    config.write("simfw/boot.json", b'{"x": 1}\n')
    boot.write("cmdline.txt", b"console=ttyAMA0\n")

    assert config.read("simfw/boot.json") == b'{"x": 1}\n'
    assert config.list("simfw") == ["boot.json"]
    assert config.read("cmdline.txt") is None
    assert boot.list() == ["cmdline.txt"]
    assert config.delete("simfw/boot.json")
    assert not config.delete("simfw/boot.json")
    assert config.read("simfw/boot.json") is None

    binary = bytes(range(256)) * 64
    local = tmp_path / "blob"
    local.write_bytes(binary)
    boot.put(local, "vmlinuz-test")
    boot.copy_out("vmlinuz-test", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == binary
    assert boot.read("vmlinuz-test") == binary


def test_ext4_files_are_read_at_their_offset(tmp_path):
    path = tmp_path / "disk.img"
    with path.open("wb") as handle:
        handle.truncate(12 * MIB)
    run(["sfdisk", "--quiet", path], input=b"label: gpt\nsize=2MiB, name=config\nname=data\n")
    tree = tmp_path / "tree"
    (tree / "fleet").mkdir(parents=True)
    (tree / "fleet" / "state.json").write_bytes(b'{"slot": "b"}')
    data = partition(path, label="data")
    offset, size = f"offset={data.start}", f"{data.size // 1024}k"
    run(["mke2fs", "-q", "-t", "ext4", "-d", tree, "-E", offset, path, size])

    volume = ext4_volume(path, label="data")

    assert volume.read("/fleet/state.json") == b'{"slot": "b"}'
    assert volume.read("/fleet/missing.json") is None
    with pytest.raises(DiskError):
        ext4_volume(path, label="config").read("/anything")


def test_fat_check_accepts_a_clean_volume_and_names_a_damaged_one(image):
    config = fat_volume(image, label="config")
    config.write("autoboot.txt", b"[all]\nboot_partition=2\n" * 40)
    config.check()
    # A power cut while Linux had the volume mounted leaves the dirty bit set: not damage.
    with image.open("r+b") as disk:
        disk.seek(config.part.start + 0x25)
        disk.write(b"\x01")
    config.check()

    # The damage a power cut left in session 1: a directory entry whose clusters the FAT
    # marks free. Clear every cluster entry (from entry 2 on) in both FAT copies.
    with image.open("r+b") as disk:
        disk.seek(config.part.start)
        boot = disk.read(512)
        reserved = int.from_bytes(boot[14:16], "little")
        fats, fat_sectors = boot[16], int.from_bytes(boot[22:24], "little")
        for copy in range(fats):
            disk.seek(config.part.start + (reserved + copy * fat_sectors) * 512 + 3)
            disk.write(b"\0" * (fat_sectors * 512 - 3))
    with pytest.raises(DiskError, match="config"):
        config.check()
