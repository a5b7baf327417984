import hashlib
import json

import pytest

from fleetcore.errors import FormatError
from fleetcore.release import (
    Chunk,
    Chunker,
    ChunkIndex,
    ImageName,
    chunk_path,
    dump_index,
    dump_manifest,
    load_index,
    load_manifest,
)

CHUNKER = Chunker(min_size=16, avg_size=64, max_size=256)


def _index(parts: list[bytes]) -> ChunkIndex:
    chunks = tuple(Chunk(sha256=hashlib.sha256(p).hexdigest(), size=len(p)) for p in parts)
    whole = b"".join(parts)
    return ChunkIndex(
        image=ImageName.SYSTEM,
        image_size=len(whole),
        image_sha256=hashlib.sha256(whole).hexdigest(),
        chunker=CHUNKER,
        chunks=chunks,
    )


def test_index_round_trip_is_canonical():
    index = _index([b"a" * 20, b"b" * 30])
    data = dump_index(index)
    assert load_index(data) == index
    assert dump_index(load_index(data)) == data
    assert index.offsets() == [0, 20]


def test_index_sizes_must_add_up():
    index = _index([b"a" * 20])
    broken = dump_index(index).replace(b'"image_size":20', b'"image_size":21')
    with pytest.raises(FormatError, match="add up to 20"):
        load_index(broken)


def test_manifest_rejects_unknown_keys():
    with pytest.raises(FormatError, match="invalid release manifest"):
        load_manifest(b'{"version": "1.0.0", "surprise": 1}')


def test_chunk_path():
    digest = "ab" * 32
    assert chunk_path(digest) == f"chunks/abab/{digest}.zst"
    with pytest.raises(FormatError):
        chunk_path("../etc/passwd")


def _manifest(images: list[ImageName]) -> bytes:
    entry = {"size": 1, "sha256": "ab" * 32, "index": "os/1.0/x.index.json"}
    return json.dumps(
        {
            "version": "1.0",
            "hardware": ["pi4"],
            "system_format": "erofs",
            "created": 0,
            "images": {name.value: entry for name in images},
        }
    ).encode()


def test_boot_image_per_slot():
    manifest = load_manifest(_manifest(list(ImageName)))
    assert manifest.boot_for("a") is ImageName.BOOT
    assert manifest.boot_for("b") is ImageName.BOOT_B
    assert load_manifest(dump_manifest(manifest)) == manifest


def test_manifest_without_slot_b_boot_refuses_slot_b():
    manifest = load_manifest(_manifest([ImageName.BOOT, ImageName.SYSTEM]))
    assert manifest.boot_for("a") is ImageName.BOOT
    with pytest.raises(FormatError, match="no boot image for slot b"):
        manifest.boot_for("b")


def test_manifest_needs_boot_and_system():
    with pytest.raises(FormatError, match="lacks images: system"):
        load_manifest(_manifest([ImageName.BOOT, ImageName.BOOT_B]))
