"""The compact index parser agrees with fleetcore's model, and rejects what it rejects."""

from __future__ import annotations

import json

import pytest

from fleetcore.errors import FormatError
from fleetcore.release import (
    MAX_CHUNK_SIZE,
    Chunk,
    Chunker,
    ChunkIndex,
    ImageName,
    dump_index,
    load_index,
)
from tests.updater.releases import cut, image_bytes
from updater.chunkindex import CompactIndex, SeedMap, load_compact


@pytest.fixture(scope="module")
def canonical(tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("chunks")
    return dump_index(cut(image_bytes(5, 300_000), ImageName.SYSTEM, out))


def same(a: CompactIndex, b: CompactIndex) -> bool:
    return (a.image, a.image_size, a.image_sha256, a.digests, list(a.sizes), list(a.offsets)) == (
        b.image,
        b.image_size,
        b.image_sha256,
        b.digests,
        list(b.sizes),
        list(b.offsets),
    )


def test_canonical_fast_path_matches_the_model(canonical):
    assert same(load_compact(canonical), CompactIndex.from_index(load_index(canonical)))
    assert len(load_compact(canonical)) > 5


def test_other_spellings_take_the_full_parse(canonical):
    pretty = json.dumps(json.loads(canonical), indent=2).encode()
    assert same(load_compact(pretty), load_compact(canonical))


def test_sizes_must_add_up(canonical):
    data = json.loads(canonical)
    data["image_size"] += 1
    with pytest.raises(FormatError, match="add up"):
        load_compact(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())


@pytest.mark.parametrize(
    ("field", "value"), [("image_sha256", "XYZ"), ("image", "kernel"), ("format", 2)]
)
def test_header_fields_are_validated(canonical, field, value):
    data = json.loads(canonical)
    data[field] = value
    with pytest.raises(FormatError):
        load_compact(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())


def test_a_bad_chunk_entry_is_rejected(canonical):
    data = json.loads(canonical)
    data["chunks"][2]["sha256"] = data["chunks"][2]["sha256"].upper()
    with pytest.raises(FormatError):
        load_compact(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())


def test_seed_map_finds_chunks_across_images(canonical):
    index = load_compact(canonical)
    seed = SeedMap([index])
    assert seed.find(index.digest(3)) == (ImageName.SYSTEM, index.offsets[3], index.sizes[3])
    assert seed.find(b"\0" * 32) is None


@pytest.mark.parametrize("extra", [0, 1])
def test_an_image_larger_than_the_chunk_cap_parses(extra: int):
    """A real release: a 256 MiB boot image in 256 KiB chunks. The header check must not
    need one chunk of the whole image's size (that is above MAX_CHUNK_SIZE)."""
    chunk = 256 * 1024
    sizes = [chunk] * (MAX_CHUNK_SIZE // chunk * 16) + ([extra] if extra else [])
    index = ChunkIndex(
        image=ImageName.BOOT,
        image_size=sum(sizes),
        image_sha256="1" * 64,
        chunker=Chunker(min_size=16 * 1024, avg_size=64 * 1024, max_size=chunk),
        chunks=tuple(Chunk(sha256=f"{i:064x}", size=s) for i, s in enumerate(sizes)),
    )
    data = dump_index(index)
    assert index.image_size > MAX_CHUNK_SIZE
    assert same(load_compact(data), CompactIndex.from_index(load_index(data)))
    short = data.replace(f'"image_size":{index.image_size}'.encode(), b'"image_size":5')
    with pytest.raises(FormatError, match="add up to"):
        load_compact(short)
