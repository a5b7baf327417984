"""A real HTTP server on loopback for the port-forwarding tests (ADR 0074): each path is a
page of its own, ``/big`` is 1 MiB; and fetching several pages at once through a forward."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx

BIG = bytes(range(256)) * 4096  # 1 MiB


def page(path: str) -> bytes:
    """What the server answers for ``path``."""
    return BIG if path == "/big" else f"page {path} ".encode() * 500


class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = page(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@contextlib.contextmanager
def serve_pages(port: int = 0) -> Iterator[int]:
    """The server on ``127.0.0.1:port`` (0: any free port); yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def fetch_all(port: int, paths: list[str], *, timeout_s: float = 60) -> dict[str, bytes]:
    """Each path from ``127.0.0.1:port``, all at once, each on its own connection."""

    def fetch(path: str) -> bytes:
        answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout_s)
        answer.raise_for_status()
        return answer.content

    with ThreadPoolExecutor(len(paths)) as pool:
        return dict(zip(paths, pool.map(fetch, paths), strict=True))
