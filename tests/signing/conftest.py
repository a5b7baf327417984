"""A real HTTP server on loopback serving fixture repositories, as a device would see them."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPOS = Path(__file__).parent / "fixtures" / "repos"


class RepoHandler(http.server.SimpleHTTPRequestHandler):
    endless_prefix: str | None = None

    def log_message(self, format, *args):  # quiet test output
        pass

    def do_GET(self):
        if self.endless_prefix and self.path.startswith(self.endless_prefix):
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(100_000):  # bounded: about 400 MB at most, far past any cap
                    self.wfile.write(b"\0" * 4096)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        super().do_GET()


class RepoServer:
    """Serves one directory; ``serve(name)`` switches to another fixture, like an attacker."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.current = root
        handler = functools.partial(RepoHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/repo"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, source: Path) -> None:
        link = self.root / "repo"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(source.resolve())

    def endless(self, prefix: str | None) -> None:
        RepoHandler.endless_prefix = prefix

    def close(self) -> None:
        RepoHandler.endless_prefix = None
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def repo_server(tmp_path) -> Iterator[RepoServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = RepoServer(root)
    server.serve(REPOS / "good")
    yield server
    server.close()


@pytest.fixture
def trusted_root() -> bytes:
    return (REPOS / "good" / "metadata" / "1.root.json").read_bytes()


@pytest.fixture
def writable_repo(tmp_path) -> Path:
    dest = tmp_path / "repo-copy"
    shutil.copytree(REPOS / "good", dest)
    return dest


@pytest.fixture
def serve(tmp_path):
    """Serve any directory over real HTTP on loopback; returns its base URL."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(RepoHandler, directory=str(directory))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_port}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
