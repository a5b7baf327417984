"""The delta list format: what a publisher writes loads back; hostile lists are refused with
one line; a diff decodes only against its base and only to its declared size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zstandard

from fleetcore.delta import (
    MAX_BASE_BYTES,
    MAX_BASES,
    Delta,
    DeltaList,
    delta_path,
    deltas_target,
    dump_deltas,
    load_deltas,
)
from fleetcore.errors import FormatError
from fleetcore.release import Chunk
from fleetcore.version import Version
from fleetcore.zstdcap import ZstdBombError, decompress_exact

FIXTURES = Path(__file__).parent / "fixtures" / "deltas"
A, B, C = "a" * 64, "b" * 64, "c" * 64


def a_list() -> DeltaList:
    return DeltaList(
        from_version=Version("1.0.0"),
        to_version=Version("2.0.0"),
        deltas=(
            Delta(target=A, bases=(Chunk(sha256=B, size=65536),), delta_size=120),
            Delta(
                target=C,
                bases=(Chunk(sha256=A, size=4096), Chunk(sha256=B, size=65536)),
                delta_size=77,
            ),
        ),
    )


def test_round_trip_and_known_good_fixture():
    data = dump_deltas(a_list())
    assert load_deltas(data) == a_list()
    assert load_deltas((FIXTURES / "good.json").read_bytes()) == a_list()


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("duplicate-key.json", "duplicate"),
        ("duplicate-target.json", "has two deltas"),
        ("too-many-bases.json", f"at most {MAX_BASES} items"),
        ("bases-too-large.json", f"above {MAX_BASE_BYTES}"),
        ("delta-too-large.json", "less than or equal"),
        ("no-bases.json", "at least 1 item"),
        ("float-size.json", "valid integer"),
        ("unknown-key.json", "Extra inputs"),
    ],
)
def test_hostile_lists_are_refused_with_one_line(fixture, message):
    with pytest.raises(FormatError, match=message) as err:
        load_deltas((FIXTURES / fixture).read_bytes())
    assert "\n" not in str(err.value)


def test_paths_and_target_names():
    bases = (Chunk(sha256=B, size=1),)
    assert delta_path(A, bases).startswith(f"deltas/aaaa/{A}-")
    assert delta_path(A, bases) != delta_path(A, (Chunk(sha256=C, size=1),))
    assert deltas_target("2.0.0", "1.0.0") == "os/2.0.0/deltas/1.0.0.json"
    with pytest.raises(FormatError):
        delta_path("../x", bases)


def diff(base: bytes, data: bytes, *, write_content_size: bool = True) -> bytes:
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(
        level=12, dict_data=dictionary, write_content_size=write_content_size
    ).compress(data)


BASE = bytes(range(256)) * 256
NEW = BASE[:30000] + b"changed" + BASE[30000:60000]


def test_a_diff_decodes_against_its_base_only():
    frame = diff(BASE, NEW)
    assert len(frame) < 200
    assert decompress_exact(frame, len(NEW), what="d", base=BASE) == NEW
    # Against other bytes it makes other bytes: the signed hash is what refuses them
    # (tests/updater/test_chunks_delta.py).
    assert decompress_exact(frame, len(NEW), what="d", base=bytes(len(BASE))) != NEW


def test_a_diff_that_expands_past_its_chunk_is_refused():
    frame = diff(BASE, NEW + NEW, write_content_size=False)
    with pytest.raises(ZstdBombError, match="more than the"):
        decompress_exact(frame, len(NEW), what="delta", base=BASE)
    with pytest.raises(ZstdBombError, match="declares"):
        decompress_exact(diff(BASE, NEW + b"x"), len(NEW), what="delta", base=BASE)


def test_a_diff_declaring_a_huge_window_is_refused():
    params = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=27, write_content_size=False
    )
    stream = zstandard.ZstdCompressor(compression_params=params).compressobj()
    frame = stream.compress(bytes(1 << 16)) + stream.flush()
    with pytest.raises(ZstdBombError, match="too much memory"):
        decompress_exact(frame, 1 << 16, what="delta", base=BASE)


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_and_garbage_diffs_are_refused(cut):
    frame = diff(BASE, NEW)
    with pytest.raises(ZstdBombError):
        decompress_exact(frame[:-cut], len(NEW), what="delta", base=BASE)
    with pytest.raises(ZstdBombError, match="not a zstd frame"):
        decompress_exact(b"\x00" * cut, len(NEW), what="delta", base=BASE)


def test_fixture_files_are_what_the_tests_say():
    good = json.loads((FIXTURES / "good.json").read_text())
    assert good["deltas"][0]["target"] == A
