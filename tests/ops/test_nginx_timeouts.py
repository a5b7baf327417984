"""The stack's nginx drops stalled clients (slowloris) and keeps serving others.

The real config on loopback (tests/ops/nginxrun.py), with its real timeouts: a client that
never finishes its TLS handshake, one that sends its headers a byte at a time and one whose
body stops are all cut off, while ordinary requests are answered meanwhile.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.ops.nginxrun import CONF, Echo, run_nginx, serve_upstreams

pytestmark = pytest.mark.integration

# Stated bounds on the config's values (seconds).
BOUNDS = {
    "client_header_timeout": 10,
    "client_body_timeout": 30,
    "send_timeout": 30,
    "keepalive_timeout": 30,
}
# Far above every timeout, below nginx's defaults (60 s): each stalled client is gone before.
DROPPED_WITHIN_S = 40


def _seconds(directive: str) -> int:
    (value,) = re.findall(rf"^\s*{directive} (\d+)s;", CONF.read_text(), flags=re.MULTILINE)
    return int(value)


def test_every_stall_timeout_is_set_and_bounded():
    for directive, bound in BOUNDS.items():
        assert 0 < _seconds(directive) <= bound, directive


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """nginx in front of echo upstreams; yields its HTTPS port and CA certificate."""
    handlers = {"overlord": Echo, "grafana": Echo, "loki": Echo}
    with (
        serve_upstreams(handlers) as ports,
        run_nginx(tmp_path_factory.mktemp("nginx-stall"), ports) as (https, _http, cert),
    ):
        yield int(https.rsplit(":", 1)[1]), cert


def _tls(port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection(("127.0.0.1", port), timeout=DROPPED_WITHIN_S)
    return context.wrap_socket(sock)


def _until_closed(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except (ConnectionResetError, ssl.SSLError):
        pass
    return answer


def _silent(port: int) -> bytes:
    """Connects and never starts the TLS handshake."""
    with socket.create_connection(("127.0.0.1", port), timeout=DROPPED_WITHIN_S) as sock:
        return _until_closed(sock)


def _trickle(port: int) -> bytes:
    """Sends a request's headers one byte every half second, for longer than any timeout."""
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    with _tls(port) as sock:
        sock.settimeout(0.5)
        for byte in request:
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.send(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    return b""
                continue
            sock.settimeout(DROPPED_WITHIN_S)
            return answer + _until_closed(sock)
    raise AssertionError("every header byte was accepted")


def _stalled_body(port: int) -> bytes:
    """Announces a body and stops after its first byte."""
    with _tls(port) as sock:
        sock.sendall(
            b"POST /api/v1/devices/d1/heartbeat HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
        )
        return _until_closed(sock)


def test_stalled_clients_are_dropped_while_others_are_served(nginx: tuple[int, Path]):
    port, cert = nginx
    answers: dict[str, bytes] = {}
    stalls: dict[str, Callable[[int], bytes]] = {
        "silent": _silent,
        "trickle": _trickle,
        "stalled body": _stalled_body,
    }
    threads = [
        threading.Thread(target=lambda n=name, f=stall: answers.__setitem__(n, f(port)))
        for name, stall in stalls.items()
    ]
    for thread in threads:
        thread.start()
    served = 0
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trust, timeout=10) as client:
        while any(thread.is_alive() for thread in threads):
            served += client.get("/health").status_code == 200
            time.sleep(0.5)
    for thread in threads:
        thread.join()
    assert set(answers) == set(stalls), "a stalled client was never dropped"
    assert answers["silent"] == b""
    for name in ("trickle", "stalled body"):
        status = answers[name].split(b"\r\n", 1)[0]
        assert status in (b"", b"HTTP/1.1 408 Request Time-out"), (name, status)
    assert served > 0
