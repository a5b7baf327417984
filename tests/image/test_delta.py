"""image.delta: a chunk the previous release lacks ships as a diff against where its bytes were
in the previous image, found through the last shared chunk even after a shift."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import zstandard

from fleetcore.delta import delta_path, load_deltas
from fleetcore.release import ChunkIndex, ImageName
from fleetcore.version import Version
from fleetcore.zstdcap import decompress_exact
from image import chunkstore, delta
from image.errors import LayoutError
from image.release import read_previous
from tests.updater.releases import build_release, image_bytes

OLD = image_bytes(1, 2_000_000)


def release(tmp_path: Path, name: str, system: bytes, *, previous: Path | None = None) -> Path:
    boot = image_bytes(9, 100_000)
    return build_release(
        tmp_path, name, {ImageName.BOOT: boot, ImageName.SYSTEM: system}, delta_from=previous
    )


def index(path: Path) -> ChunkIndex:
    return chunkstore.load_index_file(path / "system.index.json")


def made_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / "deltas").rglob("*.zst"))


def test_inserted_bytes_shift_the_rest_and_the_anchor_follows(tmp_path):
    """500 bytes inserted early shift every later chunk's bytes; a delta of a chunk changed
    further on must still find its base by the shift, not by its offset."""
    old = release(tmp_path, "1.0.0", OLD)
    new_system = OLD[:300_000] + image_bytes(2, 500) + OLD[300_000:]
    edited = bytearray(new_system)
    edited[1_500_000:1_500_040] = image_bytes(3, 40)
    new = release(tmp_path, "2.0.0", bytes(edited), previous=old)
    deltas = load_deltas((new / "delta-lists" / "1.0.0.json").read_bytes())
    have = {c.sha256 for c in index(old).chunks}
    changed = [c for c in index(new).chunks if c.sha256 not in have]
    assert {d.target for d in deltas.deltas} == {c.sha256 for c in changed}
    # Each diff is a few hundred bytes at most: the base held the chunk's bytes.
    assert all(d.delta_size < 1200 for d in deltas.deltas)
    for d in deltas.deltas:
        base = b"".join(chunkstore.read_chunk(old, b.sha256, b.size) for b in d.bases)
        size = next(c.size for c in changed if c.sha256 == d.target)
        diff = (new / delta_path(d.target, d.bases)).read_bytes()
        plain = decompress_exact(diff, size, what="delta", base=base)
        assert hashlib.sha256(plain).hexdigest() == d.target


def test_new_content_gets_no_delta(tmp_path):
    old = release(tmp_path, "1.0.0", OLD)
    new = release(tmp_path, "2.0.0", OLD[:1_000_000] + image_bytes(5, 1_000_000), previous=old)
    made = load_deltas((new / "delta-lists" / "1.0.0.json").read_bytes()).deltas
    # Only the chunk that straddles old and new bytes has a base worth diffing against.
    assert len(made) <= 1
    assert made_bytes(new) == sum(d.delta_size for d in made)
    changed = len({c.sha256 for c in index(new).chunks} - {c.sha256 for c in index(old).chunks})
    assert changed > 30


def test_more_neighbours_never_cost_more_than_the_full_chunks(tmp_path):
    old = release(tmp_path, "1.0.0", OLD)
    edited = bytearray(OLD)
    for at in range(100_000, 2_000_000, 250_000):
        edited[at : at + 16] = bytes(16)
    new = release(tmp_path, "2.0.0", bytes(edited))
    _, old_indexes = read_previous(old)
    _, new_indexes = read_previous(new)
    for neighbours in (0, 1, 2):
        made = delta.make(
            new,
            old,
            version=Version("2.0.0"),
            from_version=Version("1.0.0"),
            new=new_indexes,
            old=old_indexes,
            neighbours=neighbours,
        )
        assert made.deltas
        for d in made.deltas:
            full = (new / f"chunks/{d.target[:4]}/{d.target}.zst").stat().st_size
            assert d.delta_size < full


def test_delta_from_a_folder_that_is_no_release_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="is not a release folder") as err:
        read_previous(tmp_path / "empty")
    assert "\n" not in str(err.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"format": 1, "format": 1}')
    with pytest.raises(LayoutError, match="duplicate"):
        read_previous(broken)


def test_zstd_dictionary_is_what_the_device_decodes_with():
    """A diff made here decodes with the device's decoder: same raw-content dictionary."""
    base, data = OLD[:100_000], OLD[:50_000] + b"x" + OLD[50_001:100_000]
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    frame = zstandard.ZstdCompressor(level=12, dict_data=dictionary).compress(data)
    assert decompress_exact(frame, len(data), what="d", base=base) == data
