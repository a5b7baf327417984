"""A real forward proxy on loopback, and a throwaway TLS certificate for an https server.

The proxy does what squid or tinyproxy do for a device: ``CONNECT host:port`` opens a byte
tunnel (TLS runs inside it, end to end), and an absolute-form request
(``GET http://host:port/path``) is rewritten to origin form and relayed on one upstream
connection per client connection, so pipelined keep-alive requests pass as they are. It
records every request line and counts the bytes it carried back, so a test can tell that
traffic went through it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import urlsplit

from fleetcore.run import run


class ForwardProxy:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []
        self.bytes_to_client = 0
        self.upstreams: set[tuple[str, int]] = set()  # local (host, port) of each upstream
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def close(self) -> None:
        self.closed = True
        # shutdown() first: close() alone does not wake the thread blocked in accept(), and
        # the kernel keeps that socket listening, so it would capture a later test's
        # connections to the same port number.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def targets(self, method: str) -> list[str]:
        with self.lock:
            return [r.split(" ", 1)[1] for r in self.requests if r.startswith(method + " ")]

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _head(reader: BinaryIO) -> list[bytes] | None:
        lines: list[bytes] = []
        while True:
            line = reader.readline(65536)
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                return lines
            lines.append(line.rstrip(b"\r\n"))

    def _record(self, request_line: str, headers: list[bytes]) -> None:
        auth = next(
            (
                h.split(b":", 1)[1].strip().decode()
                for h in headers
                if h.lower().startswith(b"proxy-authorization:")
            ),
            None,
        )
        with self.lock:
            self.requests.append(request_line)
            self.authorizations.append(auth)

    def _connect(self, host: str, port: int) -> socket.socket:
        upstream = socket.create_connection((host, port))
        with self.lock:
            self.upstreams.add(upstream.getsockname()[:2])
        return upstream

    def _pump_back(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                with self.lock:
                    self.bytes_to_client += len(data)
                client.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)

    def _serve(self, client: socket.socket) -> None:
        # Unbuffered, so nothing a tunnel must carry is left behind in a buffer.
        reader = cast(BinaryIO, client.makefile("rb", buffering=0))
        upstream: socket.socket | None = None
        try:
            while (head := self._head(reader)) is not None and head:
                method, target, version = head[0].decode().split(" ", 2)
                self._record(f"{method} {target}", head[1:])
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    upstream = self._connect(host, int(port))
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    threading.Thread(
                        target=self._pump_back, args=(upstream, client), daemon=True
                    ).start()
                    while data := client.recv(65536):
                        upstream.sendall(data)
                    upstream.shutdown(socket.SHUT_WR)
                    return
                parts = urlsplit(target)
                if upstream is None:
                    upstream = self._connect(parts.hostname or "", parts.port or 80)
                    threading.Thread(
                        target=self._pump_back, args=(upstream, client), daemon=True
                    ).start()
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                kept = [h for h in head[1:] if not h.lower().startswith(b"proxy-")]
                length = next(
                    (
                        int(h.split(b":", 1)[1])
                        for h in kept
                        if h.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = reader.read(length) if length else b""
                request = b"\r\n".join([f"{method} {path} {version}".encode(), *kept])
                upstream.sendall(request + b"\r\n\r\n" + body)
            if upstream is not None:
                upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            reader.close()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate, key)."""
    cert, key = folder / "server.crt", folder / "server.key"
    run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ]
    )
    return cert, key
