"""Where a FAT file lies (updater.fatextents), on images made by the real mkfs.vfat and mcopy,
and the chains a hostile card can hold: each one clear FatError."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.updater import fatedit
from tests.updater.releases import image_bytes
from tests.updater.test_verity import _reader, fat_image
from updater.fatextents import locate
from updater.fatroot import FatError, read_root_file

BIG = image_bytes(7, 100_000)


@pytest.mark.parametrize(("size", "fat"), [(1, ""), (16, ""), (64, "-F 32")])
def test_extents_read_what_mtools_wrote(tmp_path: Path, size: int, fat: str):
    data = fat_image(tmp_path, {"a.txt": b"x" * 700, "big.bin": BIG}, size=size << 20, fat=fat)
    found = locate(_reader(data), "BIG.BIN", limit=len(data))
    assert found is not None and found.size == len(BIG)
    assert len(found.extents) == 1 and found.ascending
    read = found.reader(_reader(data))
    assert read(0, len(BIG)) == BIG
    assert read(4000, 9000) == BIG[4000:13000]
    assert data[found.extents[0].start : found.end] == BIG
    assert locate(_reader(data), "none.bin", limit=len(data)) is None
    with pytest.raises(FatError, match="past the end of BIG.BIN"):
        read(len(BIG) - 10, 11)


def test_empty_file_has_no_extents(tmp_path: Path):
    data = fat_image(tmp_path, {"empty.txt": b""})
    found = locate(_reader(data), "empty.txt", limit=len(data))
    assert found is not None and found.extents == () and found.end == 0 and found.ascending


@pytest.mark.parametrize(("order", "ascending"), [("gapped", True), ("swapped", False)])
def test_fragmented_files_read_in_file_order(tmp_path: Path, order: str, ascending: bool):
    moved = bytearray(fat_image(tmp_path, {"big.bin": BIG}))
    fatedit.reorder(moved, "big.bin", order)
    image = bytes(moved)
    found = locate(_reader(image), "big.bin", limit=len(image))
    assert found is not None
    assert len(found.extents) == 2 and found.ascending is ascending
    assert found.reader(_reader(image))(0, len(BIG)) == BIG
    assert read_root_file(_reader(image), "big.bin", limit=len(image)) == BIG


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("loop", "cluster chain leaves the filesystem or exceeds 100000 bytes"),
        ("past the filesystem", "cluster chain leaves the filesystem"),
        ("short", "big.bin's FAT cluster chain holds .* bytes, short of its 100000"),
        ("long", "cluster chain leaves the filesystem or exceeds 100000 bytes"),
    ],
)
def test_hostile_chains_are_refused(tmp_path: Path, damage: str, message: str):
    rewired = bytearray(fat_image(tmp_path, {"big.bin": BIG}))
    fatedit.rewire(rewired, "big.bin", damage)
    image = bytes(rewired)
    with pytest.raises(FatError, match=message):
        locate(_reader(image), "big.bin", limit=len(image))
    with pytest.raises(FatError, match=message):  # the whole-file reader refuses them alike
        read_root_file(_reader(image), "big.bin", limit=len(image))
