import hashlib
import json

import pytest

from fleetcore.errors import FormatError
from fleetcore.release import (
    Chunk,
    Chunker,
    ChunkIndex,
    ImageName,
    apply_patches,
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


def _manifest(images: list[ImageName], **extra: object) -> bytes:
    entry = {"size": 100, "sha256": "ab" * 32, "index": "os/1.0/x.index.json"}
    return json.dumps(
        {
            "version": "1.0",
            "hardware": ["pi4"],
            "system_format": "erofs",
            "created": 0,
            "images": {name.value: entry for name in images},
            **extra,
        }
    ).encode()


def _slot_b(*patches: tuple[int, str]) -> dict[str, object]:
    return {
        "slot_b": {
            "boot": {
                "sha256": "cd" * 32,
                "patches": [{"offset": o, "data": d} for o, d in patches],
            }
        }
    }


def test_slot_b_variant():
    manifest = load_manifest(_manifest(list(ImageName), **_slot_b((3, "6162"), (90, "ff"))))
    assert manifest.written(ImageName.BOOT, "a") == ("ab" * 32, ())
    sha, patches = manifest.written(ImageName.BOOT, "b")
    assert sha == "cd" * 32 and [p.offset for p in patches] == [3, 90]
    assert manifest.written(ImageName.SYSTEM, "b") == ("ab" * 32, ())
    assert load_manifest(dump_manifest(manifest)) == manifest


@pytest.mark.parametrize(
    "patches", [((3, "6162"), (4, "ff")), ((99, "6162"),), ((0, "6"),), ((0, "zz"),)]
)
def test_slot_b_patches_must_fit(patches):
    with pytest.raises(FormatError):
        load_manifest(_manifest(list(ImageName), **_slot_b(*patches)))


def test_apply_patches_across_blocks():
    manifest = load_manifest(_manifest(list(ImageName), **_slot_b((3, "414243"), (9, "5a"))))
    _sha, patches = manifest.written(ImageName.BOOT, "b")
    image = bytes(12)
    blocks = [apply_patches(image[o : o + 4], o, patches) for o in range(0, 12, 4)]
    assert b"".join(blocks) == b"\0\0\0ABC\0\0\0Z\0\0"
    assert apply_patches(b"xyz", 20, patches) == b"xyz"


def test_manifest_needs_boot_and_system():
    with pytest.raises(FormatError, match="lacks images: system"):
        load_manifest(_manifest([ImageName.BOOT]))
