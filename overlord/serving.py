"""uvicorn's HTTP protocol with the time and size limits it lacks for stalled clients.

uvicorn times out an idle keep-alive connection, but nothing else: a connection that sends
nothing, or sends its headers a byte at a time (slowloris), or stops in the middle of a body,
holds its socket and its task for ever. ``GuardedHttpToolsProtocol`` (the httptools parser,
uvicorn's default when installed) adds:

- a header deadline: the request line and headers must be complete within
  ``http_header_timeout_s`` of the connection opening or the request's first byte, however
  slowly they trickle in (408, then the connection is closed);
- a header size cap, ``http_max_header_bytes`` (431, closed), as httptools sets none;
- a body stall limit: a body that sends nothing for ``http_body_timeout_s`` is dropped (the
  application sees a disconnect). Not a total deadline, which large uploads could not meet.

nginx has the same limits in front (client_header_timeout, client_body_timeout).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from overlord.settings import Settings

# uvicorn's own timer: how long a kept-alive connection may idle between two requests.
KEEP_ALIVE_S = 5
_REFUSALS = {
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int


@functools.cache
def connection_limits() -> ConnectionLimits:
    """From the ``OVERLORD_*`` environment, read once per worker process (uvicorn spawns
    workers, so the protocol class cannot carry values set in the parent)."""
    settings = Settings()
    return ConnectionLimits(
        header_timeout_s=settings.http_header_timeout_s,
        body_timeout_s=settings.http_body_timeout_s,
        max_header_bytes=settings.http_max_header_bytes,
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = connection_limits()
        self._timer: asyncio.TimerHandle | None = None
        self._reading_headers = False
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._reading_headers and not self.transport.is_closing():
            # Everything received while the headers are unfinished is header bytes.
            self._header_bytes += len(data)
            if self._header_bytes > self._limits.max_header_bytes:
                self._refuse(431)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:
            self._begin_headers()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading_headers = False
        self._header_bytes = 0
        self._arm(self._limits.body_timeout_s, self._body_stalled)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self._limits.body_timeout_s, self._body_stalled)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel_timer()

    def _begin_headers(self) -> None:
        self._reading_headers = True
        self._header_bytes = 0
        self._arm(self._limits.header_timeout_s, lambda: self._refuse(408))

    def _body_stalled(self) -> None:
        self._timer = None
        if self.flow.read_paused:
            # Reading is paused because the application has not taken the body yet: the
            # client is not the one stalling.
            self._arm(self._limits.body_timeout_s, self._body_stalled)
            return
        self.transport.close()

    def _refuse(self, status: int) -> None:
        self._cancel_timer()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # No response of an earlier request is under way, so this one can be answered.
            self.transport.write(
                _REFUSALS[status] + b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
        self.transport.close()

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(seconds, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
