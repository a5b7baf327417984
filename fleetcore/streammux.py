"""The streams of a port forward on one end (ADR 0074, forwarding slice): local TCP sockets
relayed over the session's WebSocket with the framing of :mod:`fleetcore.streams`. The agent
(which dials its loopback on ``stream_open``) and ``fleetctl forward`` (which accepts on its
own) share it.

One thread waits on the WebSocket and every stream's socket with ``select``. Bytes for a
local socket that is not reading are kept up to :data:`~fleetcore.streams.BACKLOG_BYTES`
per stream; while any stream holds that much the WebSocket is not read, so TCP backpressure
reaches the other end (and the other streams wait too). A stream ends at the first end of
either side: a local EOF sends ``stream_close``; the other side's ``stream_close`` closes
the local socket once its backlog is written; ``stream_error`` closes it at once.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fleetcore import streams
from fleetcore.websocket import WebSocket

T = TypeVar("T")


@dataclass
class _Stream:
    sock: socket.socket
    backlog: bytearray = field(default_factory=bytearray)
    closing: bool = False  # the other side closed it: close once the backlog is written


class Mux:
    """``on_control`` gets each control message from the other side, in order with the data
    (a stream's end already applied); it may add streams."""

    def __init__(self, conn: WebSocket, on_control: Callable[[dict[str, Any]], None]) -> None:
        self.conn, self._on_control = conn, on_control
        self._streams: dict[int, _Stream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, number: int) -> bool:
        return number in self._streams

    def add(self, number: int, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._streams[number] = _Stream(sock)

    def fail(self, number: int, reason: str) -> None:
        """Tells the other side that ``number`` failed here, and drops it."""
        self.conn.send_text(streams.control(streams.ERROR, number, reason))
        if number in self._streams:
            self._drop(number)

    def step(self, extra: Sequence[socket.socket], wait_s: float) -> list[socket.socket]:
        """Waits up to ``wait_s`` and relays what is ready; returns which of ``extra`` are
        readable."""
        full = any(len(s.backlog) >= streams.BACKLOG_BYTES for s in self._streams.values())
        readers: list[socket.socket | WebSocket] = [s.sock for s in self._streams.values()]
        readers += extra
        if not full:
            readers.append(self.conn)
        writers = [s.sock for s in self._streams.values() if s.backlog]
        wait = 0.0 if self.conn.pending() and not full else wait_s
        ready, writable, _ = select.select(readers, writers, [], wait)
        for number, stream in list(self._streams.items()):
            if stream.sock in writable:
                self._write(number, stream)
            if number in self._streams and stream.sock in ready:
                self._read(number, stream)
        while not full and (message := self.conn.receive(0)) is not None:
            self._take(message)
        return [sock for sock in extra if sock in ready]

    def _local(self, number: int, action: Callable[[], T]) -> T | None:
        """``action`` on a stream's socket; None when it would block or failed (then the
        stream is failed and dropped)."""
        try:
            return action()
        except BlockingIOError:
            return None
        except OSError as err:
            self.fail(number, f"the local connection failed: {err}")
            return None

    def _write(self, number: int, stream: _Stream) -> None:
        sent = self._local(number, lambda: stream.sock.send(stream.backlog))
        if sent is not None:
            del stream.backlog[:sent]
            if stream.closing and not stream.backlog:
                self._drop(number)

    def _read(self, number: int, stream: _Stream) -> None:
        data = self._local(number, lambda: stream.sock.recv(streams.CHUNK_BYTES))
        if data:
            self.conn.send_bytes(streams.pack(number, data))
        elif data is not None:
            self.conn.send_text(streams.control(streams.CLOSE, number))
            self._drop(number)

    def _take(self, message: str | bytes) -> None:
        """Applies a frame from the other side."""
        if isinstance(message, bytes):
            self._data(message)
            return
        try:
            control = json.loads(message)
        except ValueError:
            return  # the other end sends JSON control frames; anything else is noise
        if not isinstance(control, dict):
            return
        number = control.get("stream")
        if control.get("type") in (streams.CLOSE, streams.ERROR) and number in self._streams:
            stream = self._streams[number]
            stream.closing = True
            if not stream.backlog or control["type"] == streams.ERROR:
                self._drop(number)
        self._on_control(control)

    def _data(self, frame: bytes) -> None:
        try:
            number, data = streams.unpack(frame)
        except streams.StreamError:
            return  # the Overlord checked the frame's size only; not ours to act on
        stream = self._streams.get(number)
        if stream is not None and not stream.closing:  # else closed here already
            stream.backlog += data

    def _drop(self, number: int) -> None:
        stream = self._streams.pop(number)
        with contextlib.suppress(OSError):
            stream.sock.close()

    def close(self) -> None:
        for number in list(self._streams):
            self._drop(number)
