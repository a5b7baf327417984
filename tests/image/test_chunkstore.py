import random
from pathlib import Path

import pytest

from fleetcore.release import Chunker, ImageName, chunk_path
from image import chunkstore
from image.errors import ImageError

SMALL = Chunker(min_size=1024, avg_size=4096, max_size=16384)


def _image(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_cut_and_reassemble(tmp_path: Path):
    data = random.Random(3).randbytes(300_000)
    index = chunkstore.cut(
        _image(tmp_path / "a.img", data), ImageName.SYSTEM, tmp_path / "store", chunker=SMALL
    )
    assert index.image_size == len(data) and len(index.chunks) > 10
    assert all(SMALL.min_size <= c.size <= SMALL.max_size for c in index.chunks[:-1])
    chunkstore.reassemble(index, tmp_path / "store", tmp_path / "back.img")
    assert (tmp_path / "back.img").read_bytes() == data


def test_insertion_changes_few_chunks(tmp_path: Path):
    rng = random.Random(4)
    data = rng.randbytes(400_000)
    changed = data[:200_000] + b"one more package" + data[200_000:]
    store = tmp_path / "store"
    one = chunkstore.cut(_image(tmp_path / "1.img", data), ImageName.SYSTEM, store, chunker=SMALL)
    two = chunkstore.cut(
        _image(tmp_path / "2.img", changed), ImageName.SYSTEM, store, chunker=SMALL
    )
    new = {c.sha256 for c in two.chunks} - {c.sha256 for c in one.chunks}
    assert len(new) <= 3
    assert len(list(store.rglob("*.zst"))) == len(
        {c.sha256 for c in one.chunks} | {c.sha256 for c in two.chunks}
    )


def test_empty_image(tmp_path: Path):
    index = chunkstore.cut(
        _image(tmp_path / "e.img", b""), ImageName.BOOT, tmp_path / "s", chunker=SMALL
    )
    assert index.chunks == () and index.image_size == 0


def test_corrupt_chunk_is_detected(tmp_path: Path):
    data = random.Random(5).randbytes(50_000)
    store = tmp_path / "store"
    index = chunkstore.cut(_image(tmp_path / "a.img", data), ImageName.SYSTEM, store, chunker=SMALL)
    victim = index.chunks[1]
    other = index.chunks[0]
    (store / chunk_path(victim.sha256)).write_bytes((store / chunk_path(other.sha256)).read_bytes())
    # A chunk of another size is refused from its frame header, one of the same size by hash.
    with pytest.raises(ImageError, match="does not match|declares"):
        chunkstore.reassemble(index, store, tmp_path / "back.img")
    assert not (tmp_path / "back.img").exists()


def test_missing_chunk_is_detected(tmp_path: Path):
    data = random.Random(6).randbytes(50_000)
    store = tmp_path / "store"
    index = chunkstore.cut(_image(tmp_path / "a.img", data), ImageName.SYSTEM, store, chunker=SMALL)
    (store / chunk_path(index.chunks[0].sha256)).unlink()
    with pytest.raises(ImageError, match="unreadable"):
        chunkstore.reassemble(index, store, tmp_path / "back.img")


def test_an_oversized_chunk_file_is_refused_unread(tmp_path: Path):
    """A stray 4 GiB (sparse) file where a 64 KiB chunk belongs is refused after reading
    one byte past the largest compressed chunk, not loaded whole."""
    sha = "a" * 64
    path = tmp_path / chunk_path(sha)
    path.parent.mkdir(parents=True)
    with path.open("wb") as handle:
        handle.truncate(4 << 30)
    with pytest.raises(ImageError, match="larger than a chunk of 65536 bytes can be"):
        chunkstore.read_chunk(tmp_path, sha, 65536)
