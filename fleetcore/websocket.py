"""A small blocking WebSocket client (``wsproto`` over one TCP or TLS socket), shared by the
agent's remote sessions and ``fleetctl logs`` (ADR 0074)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections import deque
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

CONNECT_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 30.0  # a peer that takes nothing for this long is gone
Message = str | bytes


class Closed(Exception):
    """The connection is over (refused, closed by the other side, or lost)."""


class WebSocket:
    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        context: ssl.SSLContext | None = None,
    ) -> None:
        """Connects to ``url`` (http or https) and upgrades; raises :class:`Closed` when the
        server refuses, and ``OSError`` when it cannot be reached."""
        address = urlsplit(url)
        secure = address.scheme == "https"
        host = address.hostname or ""
        sock = socket.create_connection(
            (host, address.port or (443 if secure else 80)), timeout=CONNECT_TIMEOUT_S
        )
        if secure:
            sock = (context or ssl.create_default_context()).wrap_socket(sock, server_hostname=host)
        self._sock = sock
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._events: deque[Event] = deque()
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        target = address.path + (f"?{address.query}" if address.query else "")
        extra = [(name.encode(), value.encode()) for name, value in headers.items()]
        self._send(Request(host=address.netloc, target=target, extra_headers=extra))
        while not self._events:
            self._fill(CONNECT_TIMEOUT_S)
        event = self._events.popleft()
        if not isinstance(event, AcceptConnection):
            status = event.status_code if isinstance(event, RejectConnection) else "no answer"
            raise Closed(f"the WebSocket upgrade was refused ({status})")

    def _send(self, event: Event) -> None:
        try:
            data = self._ws.send(event)
        except LocalProtocolError:  # the connection is closing or closed
            raise Closed("the connection was closed") from None
        # A receive may have left the socket non-blocking; a send waits, but not forever.
        self._sock.settimeout(SEND_TIMEOUT_S)
        self._sock.sendall(data)

    def _fill(self, timeout_s: float | None) -> bool:
        """Reads once, waiting up to ``timeout_s``; False when nothing came."""
        self._sock.settimeout(timeout_s)
        try:
            data = self._sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError, TimeoutError):
            return False
        except OSError as err:
            raise Closed(f"the connection failed: {err}") from None
        self._ws.receive_data(data or None)
        self._events.extend(self._ws.events())
        if not data and not self._events:
            raise Closed("the connection was closed")
        return True

    def fileno(self) -> int:
        """The socket's descriptor, for ``select`` beside other files."""
        return self._sock.fileno()

    def pending(self) -> bool:
        """Whether something already read (or decrypted) waits: ``select`` would not see it."""
        ssl_pending = isinstance(self._sock, ssl.SSLSocket) and self._sock.pending() > 0
        return bool(self._events) or ssl_pending

    def send_text(self, text: str) -> None:
        self._send(TextMessage(data=text))

    def send_bytes(self, data: bytes) -> None:
        self._send(BytesMessage(data=data))

    def receive(self, timeout_s: float | None) -> Message | None:
        """The next whole message, or None when none came within ``timeout_s`` (0: only what
        has already arrived; None: wait). Raises :class:`Closed` once the other side closed.
        A ping is answered here, so a connection must be read at least every few seconds."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            while self._events:
                message = self._take(self._events.popleft())
                if message is not None:
                    return message
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not self._fill(left) and left is not None and left <= 0:
                return None

    def _take(self, event: Event) -> Message | None:
        if isinstance(event, CloseConnection):
            with contextlib.suppress(OSError, Closed):
                self._send(event.response())
            raise Closed(event.reason or "the other side closed the connection")
        if isinstance(event, Ping):
            # The server's keepalive (uvicorn pings every 20 s and closes the connection
            # when no pong comes within 20 s): answered whenever a receive sees it.
            self._send(event.response())
            return None
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                text, self._text = "".join(self._text), []
                return text
        elif isinstance(event, BytesMessage):
            self._bytes.append(bytes(event.data))
            if event.message_finished:
                data, self._bytes = b"".join(self._bytes), []
                return data
        return None

    def close(self) -> None:
        # The other side may already have closed: then there is nothing left to say.
        with contextlib.suppress(OSError, Closed):
            self._send(CloseConnection(code=1000))
        self._sock.close()
