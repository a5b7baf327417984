"""The device's side of a port forward (ADR 0074, forwarding slice): TCP streams to one
port on this device's loopback, multiplexed over the session's WebSocket
(:mod:`fleetcore.streammux`).

The port is the session's, fixed when it was opened; the agent connects only to
``127.0.0.1`` and ``::1`` on it, never to another address. Each ``stream_open`` from the
Overlord is one connection; a refused one is a ``stream_error`` for that stream and the
session goes on. At most :data:`~fleetcore.streams.MAX_STREAMS` are open at once.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from fleetcore import streams
from fleetcore.streammux import Mux
from fleetcore.websocket import Closed, WebSocket

WAIT_S = 0.5
CONNECT_TIMEOUT_S = 2.0
LOOPBACK = ("127.0.0.1", "::1")


def connect_local(port: int) -> socket.socket:
    """A connection to ``port`` on the loopback (IPv4, then IPv6); OSError when neither
    accepts."""
    if not 1 <= port <= 65535:
        raise OSError(f"port {port} is not in 1..65535")
    failure: OSError | None = None
    for host in LOOPBACK:
        try:
            return socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        except OSError as err:
            failure = failure or err
    assert failure is not None
    raise failure


def serve(conn: WebSocket, stop: threading.Event, port: int) -> str:
    """Relays streams to ``port`` until the Overlord closes (:class:`Closed`) or ``stop`` is
    set; the reason this side ends the session."""

    def on_control(control: dict[str, Any]) -> None:
        if control.get("type") in ("close", "error"):
            raise Closed(str(control.get("reason", "")))
        number = control.get("stream")
        if control.get("type") == streams.OPEN and streams.valid_id(number):
            _open(mux, number, port)

    mux = Mux(conn, on_control)
    conn.send_text(streams.ready())
    try:
        while not stop.is_set():
            mux.step((), WAIT_S)
        return "the agent stopped"
    finally:
        mux.close()


def _open(mux: Mux, number: int, port: int) -> None:
    if number in mux:
        mux.fail(number, "stream already open")
    elif len(mux) >= streams.MAX_STREAMS:
        mux.fail(number, f"at most {streams.MAX_STREAMS} streams at once")
    else:
        try:
            mux.add(number, connect_local(port))
        except OSError as err:
            mux.fail(number, f"cannot connect to port {port} on this device: {err}")
