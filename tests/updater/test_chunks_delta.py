"""decode_delta: a delta is written only when it makes exactly the signed chunk."""

from __future__ import annotations

import hashlib

import pytest
import zstandard

from updater.chunks import decode_delta
from updater.errors import ChunkError

BASE = bytes(range(256)) * 256
NEW = BASE[:30000] + b"changed" + BASE[30000:60000]
SHA = hashlib.sha256(NEW).hexdigest()


def diff(base: bytes, data: bytes) -> bytes:
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(level=12, dict_data=dictionary).compress(data)


def test_a_delta_makes_its_chunk():
    assert decode_delta(diff(BASE, NEW), BASE, sha256=SHA, size=len(NEW)) == NEW


def test_a_delta_against_another_base_fails_the_hash():
    with pytest.raises(ChunkError, match="does not match its signed hash") as err:
        decode_delta(diff(BASE, NEW), bytes(len(BASE)), sha256=SHA, size=len(NEW))
    assert "\n" not in str(err.value)


def streamed(data: bytes, *, window_log: int) -> bytes:
    params = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=window_log, write_content_size=False
    )
    stream = zstandard.ZstdCompressor(compression_params=params).compressobj()
    return stream.compress(data) + stream.flush()


@pytest.mark.parametrize(
    "frame",
    [
        diff(BASE, NEW + b"more"),  # expands past the chunk's signed size
        diff(BASE, NEW)[:-4],  # truncated
        b"garbage, not zstd",
        streamed(NEW, window_log=30),  # declares a window far beyond chunk and base
    ],
    ids=["expanding", "truncated", "garbage", "huge-window"],
)
def test_hostile_deltas_are_refused_with_one_line(frame):
    with pytest.raises(ChunkError) as err:
        decode_delta(frame, BASE, sha256=SHA, size=len(NEW))
    assert str(err.value).startswith(f"delta of chunk {SHA}")
    assert "\n" not in str(err.value)
