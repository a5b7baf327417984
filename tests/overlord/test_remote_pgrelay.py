"""The cross-replica relay's pieces (ADR 0074): every piece fits PostgreSQL's payload limit,
pieces out of order are put back in order, a stream joined mid-frame waits for the next
frame, malformed pieces are dropped, an end is delivered whatever its number, and a hub ignores
frames for sockets it does not hold."""

from __future__ import annotations

import asyncio
import json

from overlord.remote.pgrelay import Reassembler, Relayed, pieces
from overlord.remote.relay import QUEUE_FRAMES, RELAY_FULL, Hub, Side

NOTIFY_LIMIT = 8000


def test_pieces_fit_the_payload_limit_and_reassemble_out_of_order():
    big = bytes(range(256)) * 80  # 20480 bytes: five pieces
    notes = pieces("s1", "operator", "b", big, 0) + pieces("s1", "operator", "t", b"{}", 5)
    assert len(notes) == 6
    assert all(len(note.encode()) < NOTIFY_LIMIT for note in notes)
    frames = Reassembler()
    assert frames.feed(notes[0]) == []
    assert frames.feed(notes[2]) == []  # ahead of 1: kept until 1 arrives
    assert frames.feed(notes[5]) == []
    assert frames.feed(notes[1]) == []
    assert frames.feed(notes[1]) == []  # a duplicate is ignored
    assert frames.feed(notes[4]) == []
    assert frames.feed(notes[3]) == [
        Relayed("s1", "operator", "b", big),
        Relayed("s1", "operator", "t", b"{}"),
    ]


def test_a_stream_joined_mid_frame_starts_at_the_next_frame_and_bad_pieces_are_dropped():
    notes = pieces("s2", "device", "b", b"a" * 5000, 3) + pieces("s2", "device", "b", b"b", 5)
    frames = Reassembler()
    assert frames.feed(notes[1]) == []
    assert frames.feed("not json") == []
    assert frames.feed(json.dumps({"s": "s2"})) == []
    assert frames.feed(notes[2]) == [Relayed("s2", "device", "b", b"b")]


def test_a_hub_ignores_frames_for_sockets_it_does_not_hold():
    async def run() -> tuple[object, object]:
        hub = Hub()
        box = hub.open("held", Side.OPERATOR, lossy=True)
        hub.relayed(Relayed("elsewhere", "operator", "b", b"not for us"))
        hub.relayed(Relayed("held", "device", "b", b"not for this side"))
        hub.relayed(Relayed("held", "operator", "b", b"line"))
        hub.relayed(Relayed("held", "operator", "e", b'{"type":"close"}'))
        return await box.take(), [await box.take(), await box.take()]

    first, rest = asyncio.run(run())
    assert first == b"line"
    assert rest == ['{"type":"close"}', None]


def test_an_end_from_another_replica_ends_the_stream_whatever_its_number():
    frames = Reassembler()
    for number in range(3):  # the stream is at 3: an end numbered 0 is not a stale piece
        (line,) = pieces("s3", "operator", "b", b"line", number)
        assert frames.feed(line) == [Relayed("s3", "operator", "b", b"line")]
    (end,) = pieces("s3", "operator", "e", b'{"type":"close"}', 0)  # another replica's DELETE
    assert frames.feed(end) == [Relayed("s3", "operator", "e", b'{"type":"close"}')]


def test_frames_relayed_to_a_slow_reader_stay_bounded():
    """A log tail's operator drops the oldest and is told how many; a lossless side that
    falls behind is closed with a reason rather than queued without bound."""

    async def run() -> tuple[list[str | bytes | None], list[str | bytes | None]]:
        hub = Hub()
        logs = hub.open("tail", Side.OPERATOR, lossy=True)
        for n in range(1000):
            hub.relayed(Relayed("tail", "operator", "b", str(n).encode()))
        assert logs.queue.qsize() == QUEUE_FRAMES
        read = [await logs.take() for _ in range(QUEUE_FRAMES + 1)]
        device = hub.open("tail", Side.DEVICE, lossy=True)  # lossless: only operators drop
        for _ in range(QUEUE_FRAMES + 1):
            hub.relayed(Relayed("tail", "device", "t", b'{"type":"resize"}'))
        closed = [device.queue.get_nowait() for _ in range(device.queue.qsize())]
        return read, closed[-2:]

    read, closed = asyncio.run(run())
    assert json.loads(str(read[0])) == {"type": "dropped", "count": 1000 - QUEUE_FRAMES}
    assert read[1:] == [str(n).encode() for n in range(1000 - QUEUE_FRAMES, 1000)]
    assert closed == [RELAY_FULL, None]
