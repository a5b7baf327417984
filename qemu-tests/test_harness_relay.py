"""The per-connection relay QEMU's guestfwd runs: bytes both ways, closed when the service is."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

from fleetcore.run import run

RELAY = Path(__file__).parent / "harness" / "relay.py"


def echo_upper_server() -> tuple[socket.socket, int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def test_relay_carries_the_request_and_the_answer():
    listener, port = echo_upper_server()
    with listener:
        proc = run([sys.executable, RELAY, "127.0.0.1", str(port)], input=b"get /desired\n")

    assert proc.stdout == b"GET /DESIRED\n"


def test_relay_exits_when_the_service_is_down():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]

    proc = run([sys.executable, RELAY, "127.0.0.1", str(port)], input=b"x", check=False)

    assert proc.returncode == 1
    assert proc.stdout == b""
