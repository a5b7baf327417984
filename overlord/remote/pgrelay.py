"""The cross-replica relay of remote-session frames through PostgreSQL ``NOTIFY`` (ADR 0074).

A frame for a peer held by another replica is published on :data:`CHANNEL` as JSON pieces
of at most :data:`CHUNK_BYTES` of data (base64, so a piece stays under PostgreSQL's
8000-byte payload limit), all pieces of one frame in one transaction. Every piece of a
stream (one session, one direction) carries a sequence number ``p``, its index ``k`` in its
frame and whether it is the frame's ``last``; the receiver puts pieces back in order
(:class:`Reassembler`) and hands whole frames to the hub, which ignores a stream whose
socket it does not hold. An ``end`` piece carries the close frame the peer sends before it
closes; it is always one piece, and is delivered whatever its number, since an admin ending
a session publishes it from whichever replica answered the ``DELETE``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)
CHANNEL = "overlord_remote"
CHUNK_BYTES = 4096
MAX_PENDING_PIECES = 256  # out-of-order pieces kept per stream before it is given up
_POLL_S = 1.0
_RECONNECT_S = 1.0


@dataclass(frozen=True)
class Relayed:
    """One whole frame from another replica: for ``side`` of ``session_id``."""

    session_id: str
    side: str
    kind: str  # "b" binary, "t" text, "e" the end (data is the last text frame)
    data: bytes


def pieces(session_id: str, side: str, kind: str, data: bytes, first: int) -> list[str]:
    """The notification payloads of one frame, numbered from ``first``."""
    chunks = [data[at : at + CHUNK_BYTES] for at in range(0, len(data), CHUNK_BYTES)] or [b""]
    return [
        json.dumps(
            {
                "s": session_id,
                "to": side,
                "p": first + index,
                "k": index,
                "last": index == len(chunks) - 1,
                "t": kind,
                "d": base64.b64encode(chunk).decode(),
            },
            separators=(",", ":"),
        )
        for index, chunk in enumerate(chunks)
    ]


@dataclass
class _Stream:
    expected: int
    waiting: dict[int, dict[str, Any]] = field(default_factory=dict)
    parts: list[bytes] = field(default_factory=list)


class Reassembler:
    """Puts the pieces of every stream back in order and joins them into frames."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], _Stream] = {}

    def feed(self, payload: str) -> list[Relayed]:
        """The whole frames ``payload`` completes, in order; malformed pieces are dropped."""
        try:
            piece = json.loads(payload)
            key = (str(piece["s"]), str(piece["to"]))
            number = int(piece["p"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed remote relay notification")
            return []
        if piece.get("t") == "e" and piece.get("k") == 0 and piece.get("last"):
            # An end is one piece and may come from any replica (an admin's DELETE), with
            # its own numbering: it ends the stream whatever number it carries.
            self._streams.pop(key, None)
            return [Relayed(key[0], key[1], "e", base64.b64decode(piece["d"]))]
        stream = self._streams.get(key)
        if stream is None:
            if piece.get("k") != 0:
                return []  # joined mid-frame: wait for the next frame's start
            stream = self._streams[key] = _Stream(expected=number)
        if number < stream.expected:
            return []
        stream.waiting[number] = piece
        if len(stream.waiting) > MAX_PENDING_PIECES:
            log.warning("remote relay stream %s lost a piece; giving it up", key)
            del self._streams[key]
            return []
        whole: list[Relayed] = []
        while (ready := stream.waiting.pop(stream.expected, None)) is not None:
            stream.expected += 1
            stream.parts.append(base64.b64decode(ready["d"]))
            if ready["last"]:
                data, stream.parts = b"".join(stream.parts), []
                whole.append(Relayed(key[0], key[1], str(ready["t"]), data))
        return whole


class PgRelay:
    """Publishes frames for peers on other replicas and listens for frames for this one.

    :meth:`publish` blocks (call it from a worker thread); the listener thread hands whole
    frames to ``deliver`` on the event loop ``loop``.
    """

    def __init__(
        self,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Relayed], None],
    ) -> None:
        self._engine = engine
        self._loop = loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._next: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="overlord-remote", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def publish(self, session_id: str, side: str, kind: str, data: bytes) -> None:
        """Sends one frame for ``side`` of the session to whichever replica holds it."""
        key = (session_id, side)
        with self._lock, self._engine.begin() as conn:
            first = self._next.get(key, 0)
            notes = pieces(session_id, side, kind, data, first)
            for note in notes:
                conn.execute(
                    text("SELECT pg_notify(:channel, :note)"), {"channel": CHANNEL, "note": note}
                )
            if kind == "e":
                self._next.pop(key, None)
            else:
                self._next[key] = first + len(notes)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as err:  # a lost database: retry after a pause, never die
                log.warning("remote relay listener interrupted: %r", err)
                self._stop.wait(_RECONNECT_S)

    def _listen(self) -> None:
        raw = self._engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()
        try:
            if conn is None:
                raise RuntimeError("the pool gave no driver connection")
            conn.autocommit = True
            conn.execute(f"LISTEN {CHANNEL}")
            frames = Reassembler()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=_POLL_S):
                    for whole in frames.feed(note.payload):
                        self._loop.call_soon_threadsafe(self._deliver, whole)
        finally:
            raw.close()
