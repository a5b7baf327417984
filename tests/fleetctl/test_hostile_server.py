"""fleetctl against a server that does not answer as an Overlord should: a wrong URL, a
broken proxy or a hostile host. Each answer is one error line (no traceback), the token is
never echoed, and nothing the server says can drive the operator's terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fleetctl.conftest import SOURCE

TOKEN = "mfo_secret-token-value-never-printed"
ESC = "\x1b]0;pwned\x07\x1b[2J"


class _Answer(BaseHTTPRequestHandler):
    status = 200
    headers_out: dict[str, str] = {}
    body: bytes = b""
    repeat = 1

    def do_GET(self) -> None:
        self.send_response(self.status)
        for name, value in self.headers_out.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(self.body) * self.repeat))
        self.end_headers()
        try:
            for _ in range(self.repeat):
                self.wfile.write(self.body)
        except OSError:
            pass  # the client stopped reading, as it should

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def answer() -> Iterator[tuple[str, type[_Answer]]]:
    handler = type("Handler", (_Answer,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()


def _fleetctl(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env |= {"PYTHONPATH": str(SOURCE), "XDG_CONFIG_HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "fleetctl", "--url", url, "--token", TOKEN, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("status", "headers", "body", "repeat", "expected"),
    [
        (
            200,
            {"Content-Type": "text/html"},
            b"<html>router login</html>",
            1,
            "not answer with JSON",
        ),
        (200, {}, b'{"items": [], "items": [1], "total": 0}', 1, "not answer with JSON"),
        (200, {}, b'{"total": NaN}', 1, "not answer with JSON"),
        (200, {}, b"[" * 100_000 + b"]" * 100_000, 1, "not answer with JSON"),
        (200, {}, b"x" * (1 << 20), 65, "larger than 64 MiB"),
        (500, {}, b"[" * 100_000, 1, "the Overlord failed (HTTP 500"),
        (502, {"X-Request-ID": "abc"}, b"Bad Gateway", 1, "HTTP 502, request id abc"),
        (302, {"Location": "https://elsewhere/"}, b"", 1, "answered a redirect"),
        (404, {}, b"not here", 1, "check --url"),
        (401, {}, f'{{"detail": "{TOKEN} is wrong"}}'.encode(), 1, "the token was refused"),
    ],
)
def test_a_bad_answer_is_one_line_and_never_a_traceback(
    answer, tmp_path: Path, status, headers, body, repeat, expected
):
    url, handler = answer
    handler.status, handler.headers_out, handler.body, handler.repeat = (
        status,
        headers,
        body,
        repeat,
    )
    result = _fleetctl(url, tmp_path, "devices", "list")
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 2 and lines[0].startswith("fleetctl: error: "), lines
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_server_text_cannot_drive_the_terminal(answer, tmp_path: Path):
    url, handler = answer
    device = {
        "id": "d1",
        "hostname": f"cam{ESC}",
        "hardware": "pi4",
        "group": None,
        "status": "online",
        "admin_status": "active",
        "image_version": "1.0.0",
        "last_seen": None,
    }
    handler.body = (
        '{"items": [' + json.dumps(device) + '], "total": 1, "limit": 100, "offset": 0}'
    ).encode()
    result = _fleetctl(url, tmp_path, "devices", "list")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "cam?]0;pwned??[2J" in result.stdout
    as_json = _fleetctl(url, tmp_path, "devices", "list", "--json")
    assert "\x1b" not in as_json.stdout and "\\u001b" in as_json.stdout
