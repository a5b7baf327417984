"""The frame rules of ADR 0074: every frame from the network is hostile.

A text frame is one JSON object with a known ``type`` and at most 4 KiB; a binary frame is
opaque payload of at most 64 KiB; a forward's stream control messages name a valid stream
id. Anything else is a :class:`FrameError`, which ends the session with ``error``.
"""

from __future__ import annotations

import json
from typing import Any

from fleetcore import streams

MAX_TEXT_BYTES = 4 * 1024
MAX_BINARY_BYTES = 64 * 1024
MAX_REASON_CHARS = 200
FROM_DEVICE = frozenset({"hello", "close", "dropped", "exit"})
MAX_DROPPED = 10**9
FROM_OPERATOR = frozenset({"close", "resize"})
# A forward's own: the device is ready, and the life of each stream (fleetcore.streams).
FORWARD_FROM_DEVICE = frozenset({"ready", streams.CLOSE, streams.ERROR})
FORWARD_FROM_OPERATOR = frozenset({streams.OPEN, streams.CLOSE, streams.ERROR})


class FrameError(ValueError):
    """A frame that breaks the rules; its message is the session's end detail."""


def control(text: str, allowed: frozenset[str]) -> dict[str, Any]:
    """The control message a text frame holds, if it is one ``allowed`` here."""
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise FrameError(f"text frame over {MAX_TEXT_BYTES} bytes")
    try:
        message = json.loads(text)
    except ValueError:
        raise FrameError("text frame is not JSON") from None
    if not isinstance(message, dict) or message.get("type") not in allowed:
        raise FrameError(f"text frame is not one of {', '.join(sorted(allowed))}")
    reason = message.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise FrameError(f"close reason is not a string of at most {MAX_REASON_CHARS} chars")
    if message["type"] == "dropped" and not _integer_in(message.get("count"), 1, MAX_DROPPED):
        raise FrameError(f"dropped count must be an integer in 1..{MAX_DROPPED}")
    if message["type"] == "resize":
        for key in ("cols", "rows"):
            if not _integer_in(message.get(key), 1, 1000):
                raise FrameError(f"resize {key} must be an integer in 1..1000")
    if message["type"] == "exit" and not _integer_in(message.get("status"), 0, 255):
        raise FrameError("exit status must be an integer in 0..255")
    if message["type"] in streams.KINDS and not streams.valid_id(message.get("stream")):
        raise FrameError(f"stream must be an integer in 1..{streams.MAX_STREAM_ID}")
    return message


def allowed(side_is_device: bool, forward: bool) -> frozenset[str]:
    """The control messages one side of a session of a kind may send."""
    if side_is_device:
        return FROM_DEVICE | (FORWARD_FROM_DEVICE if forward else frozenset())
    return FROM_OPERATOR | (FORWARD_FROM_OPERATOR if forward else frozenset())


def _integer_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def payload(data: bytes) -> bytes:
    """A binary frame's bytes, if within the size limit."""
    if len(data) > MAX_BINARY_BYTES:
        raise FrameError(f"binary frame over {MAX_BINARY_BYTES} bytes")
    return data


def text(message_type: str, **fields: object) -> str:
    """A control message as a text frame."""
    return json.dumps({"type": message_type, **fields})
