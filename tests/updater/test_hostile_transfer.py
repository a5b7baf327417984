"""The transfer path against a hostile chunk store: each class refused with one error.

A raw TCP server answers the pipelined GETs with canned bytes, so every malformed answer a
hostile store could send is tried against the real parser and chunk decoder.
"""

from __future__ import annotations

import contextlib
import re
import resource
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetcore.errors import FormatError
from fleetcore.release import MAX_CHUNK_SIZE, load_index
from tests.updater.hostile import declared_bomb, undeclared_bomb
from updater import pipeline
from updater.chunkindex import CompactIndex, load_compact
from updater.chunks import decode_chunk
from updater.errors import ChunkError
from updater.pipeline import BodyTooLong, PipelinedConnection, ProtocolError


@contextlib.contextmanager
def canned(
    answer: bytes,
    *,
    trickle: float = 0.0,
    hang_up: bool = False,
    at_once: int = 0,
    sent: list[int] | None = None,
) -> Iterator[str]:
    """A server that reads one request and writes ``answer``.

    If trickling, the first ``at_once`` bytes go at once and the rest a byte at a time until
    the client is done; ``sent`` then receives how many bytes of ``answer`` were written.
    """
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    done = at_once if trickle else len(answer)

    def serve() -> None:
        nonlocal done
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                request = b""
                while not request.endswith(b"\r\n\r\n") and (piece := conn.recv(65536)):
                    request += piece
                conn.sendall(answer[:done])
                while done < len(answer) and not stop.is_set():
                    conn.sendall(answer[done : done + 1])
                    done += 1
                    time.sleep(trickle)
                if hang_up:  # end of stream for the client; no reset from unread bytes
                    conn.shutdown(socket.SHUT_WR)
                stop.wait(5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        server.close()
        thread.join(timeout=5)
        if sent is not None:
            sent.append(done)


def fetch(url: str, limit: int = 1 << 16, *, timeout: float = 5) -> list[tuple[int, bytes]]:
    conn = PipelinedConnection(url, timeout=timeout)
    try:
        return list(conn.get_many(["chunks/x"], [limit]))
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}", ProtocolError, "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", ProtocolError, "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n", ProtocolError, "Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-10\r\n" + b"x" * 64,
            ProtocolError,
            "chunk size",
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 10_000, ProtocolError, "interim answers"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", ProtocolError, "status code"),
        (b"\x00\xff SMTP ready\r\n", ProtocolError, "status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 209715200\r\n\r\n", BodyTooLong, "209715200"),
    ],
    ids=[
        "negative",
        "plus-sign",
        "underscore",
        "chunked-negative",
        "continue-flood",
        "status",
        "garbage",
        "huge",
    ],
)
def test_malformed_answers_are_one_protocol_error(answer, error, message):
    with canned(answer) as url, pytest.raises(error, match=message):
        fetch(url)


def test_a_trickling_store_is_cut_off_by_the_batch_deadline(monkeypatch):
    monkeypatch.setattr(pipeline, "MIN_RATE", 1 << 30)  # the budget is the timeout alone
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" + b"x" * 50
    with canned(answer, trickle=0.2) as url, pytest.raises(ProtocolError, match="no complete"):
        fetch(url, timeout=1.0)  # each byte arrives well within the per-read timeout


def test_declared_terabyte_chunk_is_refused_without_allocating():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ChunkError, match="declares 1099511627776 bytes, 65536 expected"):
        decode_chunk(declared_bomb(), sha256="0" * 64, size=65536)
    with pytest.raises(ChunkError):
        decode_chunk(undeclared_bomb(), sha256="0" * 64, size=65536)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 32 * 1024


def test_a_good_chunk_still_decodes():
    import hashlib

    data = bytes(range(256)) * 64
    frame = zstandard.ZstdCompressor().compress(data)
    assert decode_chunk(frame, sha256=hashlib.sha256(data).hexdigest(), size=len(data)) == data


INDEX = (
    b'{"chunker":{"algorithm":"fastcdc2020","avg_size":4,"max_size":8,"min_size":2},'
    b'"chunks":[{"sha256":"' + b"a" * 64 + b'","size":3}],"format":1,"image":"boot",'
    b'"image_sha256":"' + b"b" * 64 + b'","image_size":3}'
)


@pytest.mark.parametrize(
    "index",
    [
        INDEX.replace(b'"format":1,', b'"format":1,"chunks":[],'),  # a second chunk list
        INDEX.replace(b'"image":"boot",', b'"image":"boot","image":"system",'),
        INDEX.replace(b'"size":3', b'"size":-3').replace(b'"image_size":3', b'"image_size":-3'),
        INDEX.replace(b'"size":3', b'"size":99999999999').replace(
            b'"image_size":3', b'"image_size":99999999999'
        ),
        INDEX.replace(b'"image_size":3', b'"image_size":3.0'),
        INDEX.replace(b'"image_size":3', b'"image_size":"3"'),
        INDEX.replace(b'"image_size":3', b'"image_size":3e0'),
        INDEX.replace(b'"size":3', b'"size":"3"'),
        INDEX.replace(b'"size":3', b'"size":3.0'),
        INDEX.replace(b'"min_size":2', b'"min_size":true'),
        INDEX.replace(b'"size":3}]', b'"size":3},]'),
    ],
    ids=[
        "duplicate-chunks",
        "duplicate-image",
        "negative-size",
        "oversized-chunk",
        "float-image-size",
        "string-image-size",
        "exponent-image-size",
        "string-chunk-size",
        "float-chunk-size",
        "bool-chunker-size",
        "trailing-comma",
    ],
)
def test_indexes_both_parsers_refuse(index):
    with pytest.raises(FormatError):
        load_index(index)
    with pytest.raises(FormatError):
        load_compact(index)


def test_the_canonical_index_parses_both_ways():
    assert load_compact(INDEX).image_size == load_index(INDEX).image_size == 3
    assert MAX_CHUNK_SIZE >= 256 * 1024


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_compact_and_full_index_parsers_agree_on_any_bytes(data):
    try:
        full = load_index(data)
    except FormatError:
        full = None
    try:
        compact = load_compact(data)
    except FormatError:
        compact = None
    assert (full is None) == (compact is None)
    if full is not None and compact is not None:
        assert (full.image_size, len(full.chunks)) == (compact.image_size, len(compact))


TWO_CHUNKS = INDEX.replace(b'"size":3}]', b'"size":1},{"sha256":"' + b"c" * 64 + b'","size":2}]')
# Tokens of the canonical index and spellings a hostile publisher might swap in for them.
_TOKENS = re.findall(rb'"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null|\s+|.', TWO_CHUNKS)
_SWAPS = [
    b'"chunks"',
    b'"chunks":[]',
    b'"size"',
    b'"image_size"',
    b'"sha256"',
    b'"format"',
    b"3.0",
    b'"3"',
    b"3e0",
    b"true",
    b"-3",
    b"0",
    b"1",
    b"2",
    b"16777217",
    b" ",
    b",",
    b":",
    b"[",
    b"]",
    b"{",
    b"}",
    b'"' + b"a" * 64 + b'"',
    b'"image":"system"',
    b"\\u0000",
]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_TOKENS) - 1),
            st.sampled_from(_SWAPS) | st.just(b""),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_compact_and_full_index_parsers_agree_on_near_canonical_indexes(edits):
    """Arbitrary bytes are almost never an index; edits of a real one reach the fast path."""
    tokens = list(_TOKENS)
    for at, swap, insert in edits:
        if insert:
            tokens.insert(at, swap)
        else:
            tokens[at] = swap
    data = b"".join(tokens)
    try:
        full = load_index(data)
    except FormatError:
        full = None
    try:
        compact = load_compact(data)
    except FormatError:
        compact = None
    assert (full is None) == (compact is None), data
    if full is not None and compact is not None:
        assert compact == CompactIndex.from_index(full), data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                b"HTTP/1.1 200 OK\r\n",
                b"HTTP/1.1 100 Continue\r\n",
                b"Content-Length: ",
                b"Transfer-Encoding: chunked\r\n",
                b"\r\n",
                b"-1",
                b"5",
                b"ff",
                b"hello",
                b"Connection: close\r\n",
                b"0\r\n\r\n",
                b"\x00",
                b"99999999999999999999",
                b"fffffffffffffffff",
                b" 7",
                b"1_0",
                b"HTTP/1.1 204 No Content\r\n",
                b"HTTP/1.0 404 Not Found\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\n" * 2000,
            ]
        )
        | st.binary(max_size=32),
        max_size=24,
    )
)
def test_any_answer_is_bytes_or_one_protocol_error(parts):
    # Only the parser's two errors: a ValueError, RecursionError or MemoryError fails here
    # (the server ends its stream cleanly, so no reset or timeout can stand in for them).
    with canned(b"".join(parts), hang_up=True) as url:
        try:
            for status, body in fetch(url, timeout=5):
                assert 100 <= status <= 599
                assert len(body) <= 1 << 20
        except (ProtocolError, BodyTooLong):
            pass


def test_a_large_image_of_small_chunks_parses_both_ways():
    """A 256 MiB system image of 256 KiB chunks (the QEMU tier's image): the image may be
    far larger than any one chunk."""
    import hashlib as _hashlib

    from fleetcore.release import Chunk, Chunker, ChunkIndex, ImageName, dump_index

    count, size = 1024, 256 * 1024
    index = ChunkIndex(
        image=ImageName.SYSTEM,
        image_size=count * size,
        image_sha256="c" * 64,
        chunker=Chunker(min_size=16 * 1024, avg_size=64 * 1024, max_size=size),
        chunks=tuple(
            Chunk(sha256=_hashlib.sha256(str(i).encode()).hexdigest(), size=size)
            for i in range(count)
        ),
    )
    data = dump_index(index)
    compact = load_compact(data)
    assert (compact.image_size, len(compact)) == (count * size, count)
    assert load_index(data).image_size == count * size


def test_a_trickling_metadata_server_is_cut_off_by_the_deadline():
    """urllib3's read of n bytes waits for all n, each byte within the per-read timeout: a
    deadline checked between reads of 64 KiB never ran before a small document was whole."""
    from tuf.api.exceptions import SlowRetrievalError

    from updater.fetcher import ProxyAwareFetcher

    head = b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n"
    sent: list[int] = []
    fetcher = ProxyAwareFetcher(proxy=None, timeout=0.25)  # a byte every 0.1 s: 40 s in all
    with (
        canned(head + b"x" * 400, trickle=0.1, at_once=len(head), sent=sent) as url,
        pytest.raises(SlowRetrievalError, match="deadline"),
    ):
        b"".join(fetcher.fetch(f"{url}/metadata/timestamp.json"))
    assert sent[0] < len(head) + 400  # cut off mid-body, not after the whole document


@pytest.mark.timeout(30)  # a guard: the old code waited for a FIFO writer forever
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_directory_chunk_that_is_no_regular_file_is_refused(tmp_path, kind):
    import hashlib
    import os

    from fleetcore.release import chunk_path
    from updater.chunks import DirectoryChunkSource

    sha = hashlib.sha256(b"chunk").hexdigest()
    path = tmp_path / chunk_path(sha)
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    source = DirectoryChunkSource(tmp_path)
    with pytest.raises(ChunkError, match="not a regular file"):
        source.get(sha, 5)


def _manifest() -> bytes:
    from fleetcore.release import (
        BytePatch,
        Hardware,
        ImageEntry,
        ImageName,
        Manifest,
        SlotVariant,
        SystemFormat,
        dump_manifest,
    )
    from fleetcore.version import Version

    return dump_manifest(
        Manifest(
            version=Version("2.0.0"),
            hardware=(Hardware.PI4,),
            system_format=SystemFormat.EROFS,
            created=1,
            images={
                name: ImageEntry(size=8, sha256="a" * 64, index=f"os/2.0.0/{name.value}.index.json")
                for name in ImageName
            },
            slot_b={
                ImageName.BOOT: SlotVariant(
                    sha256="b" * 64, patches=(BytePatch(offset=2, data="ff"),)
                )
            },
        )
    )


MANIFEST = _manifest()
_MANIFEST_TOKENS = re.findall(rb'"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|\s+|.', MANIFEST)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_MANIFEST_TOKENS) - 1),
            st.sampled_from([*_SWAPS, b'"version"', b'"1.0.0"', b'"offset"', b"[]", b"{}"])
            | st.binary(max_size=8),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_a_manifest_is_a_model_or_one_format_error(edits):
    from fleetcore.release import dump_manifest, load_manifest

    tokens = list(_MANIFEST_TOKENS)
    for at, swap, insert in edits:
        if insert:
            tokens.insert(at, swap)
        else:
            tokens[at] = swap
    try:
        manifest = load_manifest(b"".join(tokens))
    except FormatError:
        return
    assert load_manifest(dump_manifest(manifest)) == manifest


def test_an_image_over_the_size_limit_is_refused_by_both_parsers():
    """The compact parser bounds image_size (it builds a stand-in per 16 MiB); the full model
    took any size whose chunks add up, so the two read a > 1 TiB index differently."""
    count = (1 << 40) // MAX_CHUNK_SIZE + 1  # fleetcore.release.MAX_IMAGE_SIZE, just over
    entry = b'{"sha256":"' + b"a" * 64 + b'","size":%d}' % MAX_CHUNK_SIZE
    index = INDEX.replace(
        b'"chunks":[{"sha256":"' + b"a" * 64 + b'","size":3}]',
        b'"chunks":[' + b",".join([entry] * count) + b"]",
    ).replace(b'"image_size":3', b'"image_size":%d' % (count * MAX_CHUNK_SIZE))
    with pytest.raises(FormatError, match="image_size"):
        load_index(index)
    with pytest.raises(FormatError):
        load_compact(index)
