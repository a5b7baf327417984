"""Capped zstd decoding: exact frames pass, bombs and lies are refused with bounded memory."""

from __future__ import annotations

import io
import resource
import struct

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetcore.zstdcap import (
    CappedZstdReader,
    ZstdBombError,
    decompress_capped,
    decompress_exact,
)


def frame_declaring(size: int) -> bytes:
    """A 17-byte frame header with an 8-byte content size and one empty raw last block."""
    magic = struct.pack("<I", 0xFD2FB528)
    descriptor = bytes([0b11100000])  # FCS 8 bytes, single segment
    return magic + descriptor + struct.pack("<Q", size) + bytes([0x01, 0x00, 0x00])


def test_exact_frame_round_trips():
    data = bytes(range(256)) * 400
    assert decompress_exact(zstandard.ZstdCompressor().compress(data), len(data), what="c") == data


def test_frame_declaring_a_terabyte_is_refused_before_any_allocation():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ZstdBombError, match="declares 1099511627776 bytes, 65536 expected"):
        decompress_exact(frame_declaring(1 << 40), 65536, what="chunk x")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 16 * 1024


def test_frame_without_declared_size_is_cut_at_the_cap():
    params = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=20, write_content_size=False
    )
    bomb = zstandard.ZstdCompressor(compression_params=params).compress(bytes(32 << 20))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ZstdBombError, match="more than the 65536 bytes"):
        decompress_exact(bomb, 65536, what="chunk")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 16 * 1024


def test_short_output_trailing_bytes_and_garbage_are_refused():
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"abc")
    with pytest.raises(ZstdBombError, match="fewer"):
        decompress_exact(frame, 4, what="c")
    with pytest.raises(ZstdBombError, match="after its zstd frame"):
        decompress_exact(frame + frame, 3, what="c")
    with pytest.raises(ZstdBombError, match="not a zstd frame"):
        decompress_exact(b"not zstd at all", 3, what="c")
    with pytest.raises(ZstdBombError, match="negative"):
        decompress_exact(frame, -1, what="c")


def test_large_window_is_refused_for_a_small_output():
    params = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=27, write_content_size=False
    )
    stream = zstandard.ZstdCompressor(compression_params=params).compressobj()
    frame = stream.compress(bytes(1 << 16)) + stream.flush()
    with pytest.raises(ZstdBombError, match="too much memory"):
        decompress_exact(frame, 1 << 16, what="c")


def test_stream_reader_fails_past_its_limit_instead_of_ending():
    stream = zstandard.ZstdCompressor().compress(bytes(1 << 20))
    assert decompress_capped(stream, limit=1 << 20, what="s") == bytes(1 << 20)
    with pytest.raises(ZstdBombError, match="more than the 1000 allowed"):
        decompress_capped(stream, limit=1000, what="s")
    reader = CappedZstdReader(io.BytesIO(b"\x28\xb5\x2f\xfd garbage"), limit=10, what="s")
    with pytest.raises(ZstdBombError, match="not valid zstd"):
        reader.read()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256), st.integers(min_value=0, max_value=1 << 20))
def test_any_bytes_decode_exactly_or_raise_one_error(data, size):
    try:
        out = decompress_exact(data, size, what="fuzz")
    except ZstdBombError:
        return
    assert len(out) == size
