"""``overlord serve`` drops stalled connections and keeps serving everyone else (issue 15:
stalled connections were never timed out). A real served process, real sockets."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetcore.net import free_port
from simulator.server import stop

HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2
# Far above the configured limits: the server must drop each stalled client well before this.
DROPPED_WITHIN_S = 30


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``overlord serve`` on loopback; yields (host, port)."""
    root = tmp_path_factory.mktemp("served")
    port = free_port()
    env = {
        **os.environ,
        "OVERLORD_DATABASE_URL": f"sqlite:///{root / 'overlord.db'}",
        "OVERLORD_REPO_DIR": str(root / "repo"),
        "OVERLORD_KEYS_DIR": str(root / "keys"),
        "OVERLORD_RUN_SCHEDULER": "false",
        "OVERLORD_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "OVERLORD_HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    }
    argv = [sys.executable, "-c", "import sys; from overlord.cli import main; sys.exit(main())"]
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [*argv, "serve", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while not _healthy(port):
            assert proc.poll() is None, (root / "server.log").read_text()
            assert time.monotonic() < deadline, "overlord serve did not start"
            time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        stop(proc)
        log.close()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _connect(served: tuple[str, int]) -> socket.socket:
    return socket.create_connection(served, timeout=DROPPED_WITHIN_S)


def _answer_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes; fails if it keeps the connection open."""
    received = b""
    sock.settimeout(DROPPED_WITHIN_S)
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_headers_sent_byte_by_byte_are_cut_off_while_others_are_served(
    served: tuple[str, int],
):
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
    trickles = [_connect(served) for _ in range(20)]
    started = time.monotonic()
    dropped: dict[int, bytes] = {}
    served_meanwhile = 0
    for i, byte in enumerate(request):
        for n, sock in enumerate(trickles):
            if n in dropped:
                continue
            readable, _w, _x = select.select([sock], [], [], 0)
            try:
                if readable:
                    dropped[n] = _answer_until_closed(sock)
                else:
                    sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                dropped[n] = b""
        if len(dropped) == len(trickles):
            break
        if i % 20 == 0:
            served_meanwhile += _healthy(served[1])
        assert time.monotonic() - started < DROPPED_WITHIN_S, f"{len(dropped)} dropped"
        time.sleep(0.05)
    assert len(dropped) == len(trickles)
    assert all(answer.startswith(b"HTTP/1.1 408") or not answer for answer in dropped.values())
    assert served_meanwhile > 0
    assert _healthy(served[1])


def test_a_connection_that_sends_nothing_is_closed(served: tuple[str, int]):
    with _connect(served) as sock:
        assert _answer_until_closed(sock).startswith(b"HTTP/1.1 408")


def test_a_stalled_body_is_dropped(served: tuple[str, int]):
    with _connect(served) as sock:
        sock.sendall(
            b"POST /api/v1/devices/register HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        answer = _answer_until_closed(sock)
    # Whatever the application managed to answer, the connection did not outlive the stall.
    assert b"201" not in answer.split(b"\r\n", 1)[0]
    assert _healthy(served[1])


def test_oversized_headers_are_refused(served: tuple[str, int]):
    with _connect(served) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(200):
                sock.sendall(b"X-Big: " + b"b" * 1000 + b"\r\n")
        assert _answer_until_closed(sock).startswith(b"HTTP/1.1 431")


def test_kept_alive_connection_serves_several_requests(served: tuple[str, int]):
    host, port = served
    with httpx.Client(base_url=f"http://{host}:{port}") as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200


def test_the_stack_runs_overlord_serve():
    """The limits live in ``overlord serve``; the image must start the API that way."""
    dockerfile = Path(__file__).resolve().parents[2] / "overlord" / "deploy" / "Dockerfile"
    assert 'CMD ["overlord", "serve"' in dockerfile.read_text()
