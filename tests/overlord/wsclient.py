"""A small blocking WebSocket client for tests against a served Overlord (``wsproto`` over
a plain socket): connect with headers, send text or bytes, receive the next message."""

from __future__ import annotations

import socket
from collections import deque
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    RejectConnection,
    Request,
    TextMessage,
)

Message = str | bytes | None  # None: the server closed the connection


class WsClient:
    def __init__(self, base: str, path: str, headers: dict[str, str], timeout_s: float = 30):
        address = urlsplit(base)
        self._sock = socket.create_connection(
            (address.hostname, address.port or 80), timeout=timeout_s
        )
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._events: deque[Event] = deque()
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        extra = [(k.encode(), v.encode()) for k, v in headers.items()]
        self._send(Request(host=address.netloc, target=path, extra_headers=extra))
        event = self._next_event()
        if not isinstance(event, AcceptConnection):
            status = event.status_code if isinstance(event, RejectConnection) else event
            raise ConnectionError(f"the WebSocket upgrade was refused: {status}")

    def _send(self, event: Event) -> None:
        self._sock.sendall(self._ws.send(event))

    def _next_event(self) -> Event | None:
        while not self._events:
            data = self._sock.recv(65536)
            self._ws.receive_data(data or None)
            self._events.extend(self._ws.events())
            if not data and not self._events:
                return None
        return self._events.popleft()

    def send_text(self, text: str) -> None:
        self._send(TextMessage(data=text))

    def send_bytes(self, data: bytes) -> None:
        self._send(BytesMessage(data=data))

    def receive(self) -> Message:
        """The next whole message, or None once the server closed."""
        while True:
            event = self._next_event()
            if event is None:
                return None
            if isinstance(event, CloseConnection):
                self._sock.sendall(self._ws.send(event.response()))
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

    def close(self) -> None:
        self._sock.close()
