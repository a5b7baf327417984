"""The framing of a port-forwarding session (ADR 0074, forwarding slice), shared by the
agent, ``fleetctl forward`` and the Overlord's frame rules.

Several TCP connections (streams) share the session's one WebSocket each way. A stream's
bytes travel in binary frames that start with its id (4 bytes, big-endian) followed by at
most :data:`CHUNK_BYTES` of data. Its life is told in text frames: ``stream_open`` (operator
to device), ``stream_close`` (either way: no more data, the stream is over once what was
sent before it is delivered) and ``stream_error`` (either way: the stream failed, with a
reason). The operator numbers streams 1, 2, ... and never reuses a number in a session; at
most :data:`MAX_STREAMS` are open at once.
"""

from __future__ import annotations

import json
import struct
from typing import TypeGuard

MAX_STREAMS = 32  # a browser opens about 6 per host; room for several tabs of one UI
MAX_STREAM_ID = 2**31 - 1
CHUNK_BYTES = 16 * 1024  # one read from a local socket, one frame
BACKLOG_BYTES = 256 * 1024  # what a stream may hold for a local socket that is not reading
HEADER = struct.Struct(">I")
OPEN, CLOSE, ERROR = "stream_open", "stream_close", "stream_error"
KINDS = frozenset({OPEN, CLOSE, ERROR})
MAX_REASON_CHARS = 200


class StreamError(ValueError):
    """A frame that breaks the framing; its message says how."""


def pack(stream: int, data: bytes) -> bytes:
    """A binary frame carrying ``data`` for ``stream``."""
    return HEADER.pack(stream) + data


def unpack(frame: bytes) -> tuple[int, bytes]:
    """The stream id and the data of a binary frame."""
    if len(frame) <= HEADER.size:
        raise StreamError("a forwarded frame needs a stream id and data")
    (stream,) = HEADER.unpack_from(frame)
    if not 1 <= stream <= MAX_STREAM_ID:
        raise StreamError(f"stream id {stream} is not in 1..{MAX_STREAM_ID}")
    return stream, frame[HEADER.size :]


def valid_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_STREAM_ID


def ready() -> str:
    """The device's word that it serves the session: streams may be opened from now on."""
    return json.dumps({"type": "ready"})


def control(kind: str, stream: int, reason: str = "") -> str:
    """A stream's control message as a text frame."""
    message: dict[str, object] = {"type": kind, "stream": stream}
    if reason:
        message["reason"] = reason[:MAX_REASON_CHARS]
    return json.dumps(message)
