"""The agent's side of a remote session (ADR 0074): one outbound WebSocket, in a thread.

When the desired state names a session, :class:`Join` connects to the Overlord's device
route with ``wsproto`` over a plain socket (the standard library's ``ssl`` for https),
authenticated like every device request, and sends ``hello``. A session this device refuses
(its ``fleet.yaml`` veto, or a kind this agent does not serve) gets ``close`` with the reason;
a log tail sends each journal entry as one binary frame (JSON) until either side closes or
the agent stops it. The update loop only starts and stops the thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from collections import deque

import httpx
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from fleetcore.firstboot import RemoteAccess
from fleetcore.wire import DesiredRemote
from updater import tls
from updater.remote.journal import DEFAULT_LINES, JournalTail, TailRequest
from updater.remote.policy import refusal

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10.0
READ_S = 0.5  # how long a journal read waits: also how often the socket is checked


class SessionClosed(Exception):
    """The Overlord or the operator ended the session (or the socket was lost)."""


class Socket:
    """A client WebSocket over one TCP (or TLS) connection."""

    def __init__(self, url: httpx.URL, headers: dict[str, str]) -> None:
        port = url.port or (443 if url.scheme == "https" else 80)
        raw = socket.create_connection((url.host, port), timeout=CONNECT_TIMEOUT_S)
        if url.scheme == "https":
            raw = tls.client_context().wrap_socket(raw, server_hostname=url.host)
        self._sock = raw
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._events: deque[Event] = deque()
        target = url.raw_path.decode("ascii")
        extra = [(name.encode(), value.encode()) for name, value in headers.items()]
        self._send(Request(host=url.netloc.decode("ascii"), target=target, extra_headers=extra))
        while not self._events:
            self._receive(block=True)
        if not isinstance(self._events.popleft(), AcceptConnection):
            raise SessionClosed("the Overlord refused the session's WebSocket")

    def _send(self, event: Event) -> None:
        self._sock.sendall(self._ws.send(event))

    def _receive(self, *, block: bool) -> None:
        self._sock.settimeout(CONNECT_TIMEOUT_S if block else 0.0)
        try:
            data = self._sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        except (TimeoutError, OSError) as err:
            raise SessionClosed(f"the session's socket failed: {err}") from None
        self._ws.receive_data(data or None)
        self._events.extend(self._ws.events())
        if not data and not self._events:
            raise SessionClosed("the Overlord closed the connection")

    def send_text(self, text: str) -> None:
        self._send(TextMessage(data=text))

    def send_bytes(self, data: bytes) -> None:
        self._send(BytesMessage(data=data))

    def check(self) -> None:
        """Reads what arrived without waiting; raises when the other side ended."""
        self._receive(block=False)
        while self._events:
            event = self._events.popleft()
            if isinstance(event, CloseConnection):
                self._send(event.response())
                raise SessionClosed("the Overlord closed the session")
            if isinstance(event, TextMessage):
                message = json.loads(event.data) if event.data.startswith("{") else {}
                if message.get("type") in ("close", "error"):
                    raise SessionClosed(str(message.get("reason", "")))

    def close(self) -> None:
        # The other side may already have closed: then there is nothing left to say.
        with contextlib.suppress(OSError, LocalProtocolError):
            self._send(CloseConnection(code=1000))
        self._sock.close()


def _control(message_type: str, **fields: object) -> str:
    return json.dumps({"type": message_type, **fields})


class Join:
    """One session served by one thread; :meth:`stop` ends it and waits for the thread."""

    def __init__(
        self,
        session: DesiredRemote,
        *,
        url: httpx.URL,
        headers: dict[str, str],
        access: RemoteAccess,
        version: str,
        journalctl: str = "journalctl",
    ) -> None:
        self.session = session
        self._url, self._headers = url, headers
        self._access, self._version, self._journalctl = access, version, journalctl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="remote-session", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            conn = Socket(self._url, self._headers)
        except (OSError, SessionClosed) as err:
            log.warning("remote session %s: cannot join: %s", self.session.session, err)
            return
        try:
            conn.send_text(_control("hello", session=self.session.session, version=self._version))
            reason = refusal(self.session.kind, self._access) or self._serve(conn)
            conn.send_text(_control("close", reason=reason))
            log.info("remote session %s ended: %s", self.session.session, reason)
        except SessionClosed as ended:
            log.info("remote session %s ended by the Overlord: %s", self.session.session, ended)
        except OSError as err:
            log.warning("remote session %s: connection lost: %s", self.session.session, err)
        finally:
            conn.close()

    def _serve(self, conn: Socket) -> str:
        """Tails the journal into the socket; the reason this side ends the session."""
        lines = self.session.lines if self.session.lines is not None else DEFAULT_LINES
        request = TailRequest(unit=self.session.unit, priority=self.session.priority, lines=lines)
        try:
            tail = JournalTail(request, journalctl=self._journalctl)
        except (ValueError, OSError) as err:
            return f"cannot read the journal: {err}"
        with tail:
            while not self._stop.is_set():
                conn.check()
                batch = tail.read(READ_S)
                for entry in batch.entries:
                    conn.send_bytes(json.dumps(entry).encode())
                if batch.finished:
                    return "the journal reader ended"
        return "the agent stopped"
