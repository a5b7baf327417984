"""The test peers' side of WebSocket framing: wsproto hands a message over in as many pieces
as the socket's reads cut it into, and a peer reads only whole messages."""

from __future__ import annotations

from wsproto.events import BytesMessage, TextMessage


class Pieces:
    """Joins the pieces of the message being received."""

    def __init__(self) -> None:
        self._text, self._bytes = "", b""

    def add(self, event: TextMessage | BytesMessage) -> str | bytes | None:
        """The whole message once ``event`` is its last piece, else None."""
        if isinstance(event, TextMessage):
            self._text += event.data
            if not event.message_finished:
                return None
            text, self._text = self._text, ""
            return text
        self._bytes += event.data
        if not event.message_finished:
            return None
        data, self._bytes = self._bytes, b""
        return data
