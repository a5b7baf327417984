"""A minimal HTTP/1.1 client that pipelines GETs on one keep-alive connection.

Chunks are small (tens of KiB) and many; a full HTTP client spends more time per request
than the bytes take to arrive (measured in docs/adr/0023-chunk-transfer.md). Sending a batch
of GETs back to back and reading the responses in order (RFC 9112 section 9.3.2) removes the
round trip and most of the per-request work. Only what a static file server or CDN answers
to a plain GET is understood: status line, headers, and a body framed by Content-Length,
chunked transfer coding or connection close.

Through a forward proxy (:mod:`updater.proxy`), http:// requests go to the proxy in absolute
form (RFC 9112 section 3.2.2) and https:// ones through a CONNECT tunnel (RFC 9110 section
9.3.6), so TLS is still negotiated with, and verified against, the real server.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from typing import BinaryIO, cast
from urllib.parse import urlsplit

from updater import tls
from updater.proxy import Proxy

USER_AGENT = "metrica-fleet"
_MAX_LINE = 8192
_MAX_HEADERS = 100
_ERROR_BODY_CAP = 1 << 20
# Interim (1xx) answers allowed before the real one: a server that floods them is broken.
_MAX_INTERIM = 16
# Socket timeouts bound each read, not a whole answer: a server that trickles a byte now and
# then would hold a batch forever. A batch gets the timeout plus its bytes at this floor rate,
# then its connection is shut down from a timer (which also wakes a blocked read).
MIN_RATE = 8 * 1024


class ProtocolError(OSError):
    """The connection broke or the server answered something that is not HTTP/1.1."""


class BodyTooLong(Exception):
    """A body longer than the caller allows; the connection is no longer usable."""


class PipelinedConnection:
    def __init__(self, base_url: str, *, timeout: float, proxy: Proxy | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.rpartition("@")[2]
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.proxy = proxy
        # Absolute form through a plain proxy; origin form to the server or inside a tunnel.
        self.target_prefix = self.prefix
        if proxy is not None and not self.tls:
            self.target_prefix = f"http://{self.host_header}{self.prefix}"
        self.sock: socket.socket | None = None
        self.reader: BinaryIO | None = None

    def _connect(self) -> BinaryIO:
        if self.reader is not None:
            return self.reader
        peer = (self.proxy.host, self.proxy.port) if self.proxy else (self.host, self.port)
        sock = socket.create_connection(peer, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            if self.proxy is not None:
                self._tunnel(sock, self.proxy)
            sock = tls.client_context().wrap_socket(sock, server_hostname=self.host)
        self.sock = sock
        reader = cast(BinaryIO, sock.makefile("rb", buffering=1 << 18))
        self.reader = reader
        return reader

    def _tunnel(self, sock: socket.socket, proxy: Proxy) -> None:
        """Ask the proxy for a byte tunnel to the server; TLS then runs inside it."""
        authority = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if proxy.authorization:
            head += f"Proxy-Authorization: {proxy.authorization}\r\n"
        sock.sendall(f"{head}User-Agent: {USER_AGENT}\r\n\r\n".encode())
        # Unbuffered: the TLS handshake that follows must find every byte still in the socket.
        reader = cast(BinaryIO, sock.makefile("rb", buffering=0))
        try:
            status, _ = self._head(reader)
        except ProtocolError:
            sock.close()
            raise
        if not 200 <= status < 300:
            sock.close()
            raise ProtocolError(f"proxy {proxy.url} refused CONNECT {authority}: HTTP {status}")

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = None

    def get_many(self, paths: list[str], limits: list[int]) -> Iterator[tuple[int, bytes]]:
        """Send every GET, then yield (status, body) in order.

        Raises :class:`ProtocolError` when the connection ends early; the caller resends
        the requests not yet answered on a new connection.
        """
        reader = self._connect()
        assert self.sock is not None
        extra = ""
        if self.proxy is not None and not self.tls and self.proxy.authorization:
            extra = f"Proxy-Authorization: {self.proxy.authorization}\r\n"
        request = b"".join(
            f"GET {self.target_prefix}/{path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
            f"User-Agent: {USER_AGENT}\r\nAccept-Encoding: identity\r\n{extra}\r\n".encode()
            for path in paths
        )
        sock = self.sock
        budget = self.timeout + sum(limits) / MIN_RATE
        expired = threading.Event()

        def cut_off() -> None:
            expired.set()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(budget, cut_off)
        timer.daemon = True
        timer.start()
        try:
            sock.sendall(request)
            for limit in limits:
                status, headers = self._head(reader)
                cap = limit if status == 200 else _ERROR_BODY_CAP
                body = self._body(reader, headers, cap)
                if headers.get("connection", "").lower() == "close":
                    self.close()
                    yield status, body
                    raise ProtocolError("the server closed the connection")
                yield status, body
        except OSError as err:
            if expired.is_set():
                self.close()
                raise ProtocolError(f"no complete answer within {budget:.0f} s") from err
            raise
        finally:
            timer.cancel()

    @staticmethod
    def _line(reader: BinaryIO) -> bytes:
        line = reader.readline(_MAX_LINE + 1)
        if not line:
            raise ProtocolError("the server closed the connection")
        if len(line) > _MAX_LINE:
            raise ProtocolError("header line too long")
        return line

    def _head(self, reader: BinaryIO) -> tuple[int, dict[str, str]]:
        for _ in range(_MAX_INTERIM + 1):
            status, headers = self._one_head(reader)
            if not 100 <= status < 200:
                return status, headers
        raise ProtocolError(f"more than {_MAX_INTERIM} interim answers")

    def _one_head(self, reader: BinaryIO) -> tuple[int, dict[str, str]]:
        status_line = self._line(reader).split(None, 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:2]!r}")
        if not re.fullmatch(rb"[1-5][0-9][0-9]", status_line[1]):
            raise ProtocolError(f"bad status code {status_line[1][:16]!r}")
        status = int(status_line[1])
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = self._line(reader)
            if line in (b"\r\n", b"\n"):
                return status, headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"malformed header line {line[:64]!r}")
            headers[name.strip().lower()] = value.strip()
        raise ProtocolError("too many headers")

    def _body(self, reader: BinaryIO, headers: dict[str, str], cap: int) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._chunked(reader, cap)
        if "content-length" in headers:
            # Digits only: int() would take "-1", "+5", " 7" or "1_000" and a negative length
            # would slip under the cap.
            if not re.fullmatch(r"[0-9]{1,18}", headers["content-length"]):
                raise ProtocolError(f"bad Content-Length {headers['content-length'][:32]!r}")
            length = int(headers["content-length"])
            if length > cap:
                self.close()
                raise BodyTooLong(f"{length} bytes announced, at most {cap} expected")
            body = reader.read(length)
            if len(body) != length:
                raise ProtocolError("the server closed the connection mid-body")
            return body
        body = reader.read(cap + 1)  # framed by connection close
        self.close()
        if len(body) > cap:
            raise BodyTooLong(f"more than {cap} bytes")
        return body

    def _chunked(self, reader: BinaryIO, cap: int) -> bytes:
        body = bytearray()
        while True:
            field = self._line(reader).split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", field):
                raise ProtocolError(f"bad chunk size {field[:32]!r}")
            size = int(field, 16)
            if size == 0:
                for _ in range(_MAX_HEADERS):
                    if self._line(reader) in (b"\r\n", b"\n"):
                        return bytes(body)
                raise ProtocolError("too many trailer lines")
            if len(body) + size > cap:
                self.close()
                raise BodyTooLong(f"more than {cap} bytes")
            piece = reader.read(size)
            if len(piece) != size:
                raise ProtocolError("the server closed the connection mid-chunk")
            body += piece
            self._line(reader)
