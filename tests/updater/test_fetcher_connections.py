"""The TUF fetcher never reads the unread rest of one answer as the next answer's head.

A keep-alive server answers a 404 with a body, then a document; the fetcher gives up the
404 without reading its body. Before, the connection went back to the pool as it was, and
the next request on it read ``{"detail":"Not Found"}HTTP/1.1 200 OK`` as its status line.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tuf.api.exceptions import DownloadHTTPError

from updater.fetcher import ProxyAwareFetcher

DOCUMENT = b'{"signed": "a document"}' * 100
NOT_FOUND = b'{"detail":"Not Found"}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:
        status, body = (404, NOT_FOUND) if self.path.startswith("/missing") else (200, DOCUMENT)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_404_then_a_document_on_one_keep_alive_pool(base_url: str):
    fetcher = ProxyAwareFetcher(proxy=None, timeout=5)
    for _ in range(3):
        with pytest.raises(DownloadHTTPError):
            list(fetcher.fetch(f"{base_url}/missing/2.root.json"))
        assert b"".join(fetcher.fetch(f"{base_url}/timestamp.json")) == DOCUMENT


def test_a_document_abandoned_halfway_does_not_poison_the_next(base_url: str):
    fetcher = ProxyAwareFetcher(proxy=None, timeout=5)
    pieces = fetcher.fetch(f"{base_url}/big.json")
    next(iter(pieces))
    pieces.close()  # type: ignore[attr-defined]
    assert b"".join(fetcher.fetch(f"{base_url}/timestamp.json")) == DOCUMENT
