"""Relay one guest TCP connection to a loopback port on the host.

QEMU's user network runs this per connection (``guestfwd=...-cmd:``) with the guest's side
on stdin/stdout, so a guest with ``restrict=on`` reaches exactly one host service and
nothing else. When the service is down the relay exits and the guest sees the connection
closed, as it would see an Overlord that is down.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

CHUNK = 65536


def _pump_in(conn: socket.socket) -> None:
    """Guest (stdin) to service, then half-close so the service sees the request end."""
    while chunk := os.read(sys.stdin.fileno(), CHUNK):
        conn.sendall(chunk)
    conn.shutdown(socket.SHUT_WR)


def relay(host: str, port: int) -> int:
    try:
        conn = socket.create_connection((host, port), timeout=10)
    except OSError:
        return 1
    conn.settimeout(None)
    threading.Thread(target=_pump_in, args=(conn,), daemon=True).start()
    out = sys.stdout.fileno()
    while chunk := conn.recv(CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view) :]
    return 0


if __name__ == "__main__":
    sys.exit(relay(sys.argv[1], int(sys.argv[2])))
