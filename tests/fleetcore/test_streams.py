"""The framing of a port forward's streams (ADR 0074, forwarding slice): a binary frame is a
stream id and data; anything shorter, or an id out of range, is refused; control frames are
the stream's id and an optional reason, cut to 200 characters."""

from __future__ import annotations

import json

import pytest

from fleetcore import streams


def test_a_frame_is_its_stream_id_and_data():
    frame = streams.pack(7, b"GET / HTTP/1.1\r\n")
    assert frame[:4] == b"\x00\x00\x00\x07"
    assert streams.unpack(frame) == (7, b"GET / HTTP/1.1\r\n")
    assert streams.unpack(streams.pack(streams.MAX_STREAM_ID, b"x")) == (
        streams.MAX_STREAM_ID,
        b"x",
    )


@pytest.mark.parametrize(
    "frame",
    [b"", b"\x00\x00\x00\x01", b"\x00\x00\x00\x00data", b"\x80\x00\x00\x00data"],
    ids=["empty", "no-data", "id-0", "id-over-max"],
)
def test_a_frame_without_data_or_with_an_id_out_of_range_is_refused(frame: bytes):
    with pytest.raises(streams.StreamError):
        streams.unpack(frame)


def test_control_frames_name_the_stream_and_cut_the_reason():
    assert json.loads(streams.control(streams.OPEN, 3)) == {"type": "stream_open", "stream": 3}
    error = json.loads(streams.control(streams.ERROR, 3, "x" * 500))
    assert error["reason"] == "x" * streams.MAX_REASON_CHARS
    assert json.loads(streams.ready()) == {"type": "ready"}


@pytest.mark.parametrize("value", [0, -1, 2**31, True, "1", 1.0, None])
def test_only_integers_in_range_are_stream_ids(value: object):
    assert not streams.valid_id(value)
    assert streams.valid_id(1)
