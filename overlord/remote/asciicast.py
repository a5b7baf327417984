"""asciicast v2, the recording format of remote shells (ADR 0074, shell slice).

A recording is newline-delimited JSON: a header object (``version`` 2, the initial
``width`` and ``height``, the Unix ``timestamp`` of the start, a ``title`` and ``env``), then
one ``[seconds, code, data]`` array per event: ``o`` what the terminal printed, ``i`` what
the operator typed, ``r`` a resize (``"COLSxROWS"``). Terminal bytes are decoded as UTF-8 per
direction and incrementally, so a character split across two frames is one character;
bytes that are not UTF-8 become U+FFFD, as a terminal would show them.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass, field
from typing import Any

VERSION = 2
MEDIA_TYPE = "application/x-asciicast"
CODES = ("o", "i", "r")


class CastError(ValueError):
    """A recording that is not asciicast v2 as this module writes it."""


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    timestamp: int
    title: str
    env: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        fields: dict[str, object] = {"version": VERSION, "width": self.width}
        fields |= {"height": self.height, "timestamp": self.timestamp}
        fields |= {"title": self.title, "env": self.env}
        return json.dumps(fields) + "\n"


Event = tuple[float, str, str]


def event_line(at: float, code: str, data: str) -> str:
    return json.dumps([round(at, 6), code, data]) + "\n"


class Recorder:
    """Turns a session's frames into event lines, timed from ``started`` (monotonic)."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._decoders = {code: codecs.getincrementaldecoder("utf-8")("replace") for code in "oi"}

    def terminal(self, code: str, data: bytes, now: float) -> str:
        """The event line of ``data`` printed (``o``) or typed (``i``); "" while it holds only
        the start of a character."""
        text = self._decoders[code].decode(data)
        return event_line(now - self._started, code, text) if text else ""

    def resize(self, cols: int, rows: int, now: float) -> str:
        return event_line(now - self._started, "r", f"{cols}x{rows}")


def load(text: str) -> tuple[dict[str, Any], list[Event]]:
    """The header and events of a recording; every defect is one :class:`CastError`."""
    lines = text.splitlines()
    if not lines:
        raise CastError("empty recording")
    try:
        header = json.loads(lines[0])
    except ValueError:
        raise CastError("the header is not JSON") from None
    if not isinstance(header, dict) or header.get("version") != VERSION:
        raise CastError(f"the header is not an asciicast v{VERSION} header")
    for name in ("width", "height"):
        if not isinstance(header.get(name), int) or header[name] < 1:
            raise CastError(f"the header's {name} is not a positive integer")
    events: list[Event] = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            at, code, data = json.loads(line)
        except (ValueError, TypeError):
            raise CastError(f"line {number} is not a [time, code, data] event") from None
        if not isinstance(at, int | float) or code not in CODES or not isinstance(data, str):
            raise CastError(f"line {number} is not a [time, code, data] event")
        if events and at < events[-1][0]:
            raise CastError(f"line {number} goes back in time")
        events.append((float(at), code, data))
    return header, events
