"""``fleetctl forward DEVICE LOCAL:REMOTE``: a TCP port on the device's loopback, reachable
on this machine's ``127.0.0.1:LOCAL`` through a forward session (ADR 0074, forwarding slice).

The listening socket is bound before the session is opened (a port in use opens nothing).
Connections wait in its backlog until the device says it is ready, then each accepted one is
a stream of the session (at most :data:`~fleetcore.streams.MAX_STREAMS` at once; more wait
in the backlog). A connection the device cannot make is one line on stderr and that
connection is closed; the session goes on. Ctrl-C ends the session; any other end is one
line and status 1.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
from typing import Any

from fleetcore import streams
from fleetcore.streammux import Mux
from fleetcore.websocket import Closed, WebSocket
from fleetctl.attach import leave, open_attached
from fleetctl.commands import Subparsers, command
from fleetctl.errors import FleetctlError, ServerError, UsageError
from fleetctl.session import Session

WAIT_S = 0.5
PORTS = re.compile(r"^(\d{1,5}):(\d{1,5})$")


def add(sub: Subparsers) -> None:
    p = command(
        sub,
        "forward",
        run_forward,
        "a TCP port on a device's localhost, here (admin)",
        "Listens on 127.0.0.1:LOCAL and opens a forward session to port REMOTE on the "
        "device's own loopback; the device joins at its next desired-state poll when its "
        "configuration (FLEET_REMOTE_FORWARD=1) and its fleet.yaml (remote.forward: true) "
        "allow it. Each connection to LOCAL is relayed to the device. Ctrl-C ends it.",
    )
    p.add_argument("device", metavar="DEVICE", help="the device's id")
    p.add_argument("ports", metavar="LOCAL:REMOTE", help="port here : port on the device")


def ports(text: str) -> tuple[int, int]:
    """LOCAL and REMOTE of ``LOCAL:REMOTE``, each 1..65535."""
    match = PORTS.match(text)
    numbers = (int(match[1]), int(match[2])) if match else (0, 0)
    if not all(1 <= n <= 65535 for n in numbers):
        raise UsageError(f"{text!r} is not LOCAL:REMOTE, two ports in 1..65535 (e.g. 8080:80)")
    return numbers


def _listen(port: int) -> socket.socket:
    try:
        return socket.create_server(("127.0.0.1", port))
    except OSError as err:
        raise FleetctlError(f"cannot listen on 127.0.0.1:{port}: {err.strerror}") from None


def run_forward(session: Session, args: argparse.Namespace) -> int:
    local, remote = ports(args.ports)
    with _listen(local) as listener:
        body = {"kind": "forward", "port": remote}
        session_id, socket_ = open_attached(session.client, args.device, body)
        print(
            f"fleetctl: forward session {session_id}: 127.0.0.1:{local} to port {remote} on "
            f"{args.device}; waiting for the device to join",
            file=sys.stderr,
            flush=True,
        )
        try:
            _Relay(socket_, listener).run()
        except KeyboardInterrupt:
            return 0
        finally:
            leave(socket_)
    return 0


class _Relay:
    def __init__(self, conn: WebSocket, listener: socket.socket) -> None:
        self._listener = listener
        self._mux = Mux(conn, self._control)
        self._ready = False
        self._next = 1

    def run(self) -> None:
        """Relays until the session ends (raises :class:`ServerError`)."""
        try:
            while True:
                accepting = self._ready and len(self._mux) < streams.MAX_STREAMS
                if self._mux.step([self._listener] if accepting else [], WAIT_S):
                    self._accept()
        except Closed as closed:
            raise ServerError(f"the session ended: {closed}") from None
        except OSError as err:  # the local sockets' failures are the streams' own
            raise ServerError(f"the connection to the Overlord failed: {err}") from None
        finally:
            self._mux.close()

    def _accept(self) -> None:
        conn, _address = self._listener.accept()
        number, self._next = self._next, self._next + 1
        self._mux.add(number, conn)
        self._mux.conn.send_text(streams.control(streams.OPEN, number))

    def _control(self, control: dict[str, Any]) -> None:
        kind, reason = control.get("type"), control.get("reason", "")
        if kind == "ready" and not self._ready:
            self._ready = True
            print("fleetctl: the device joined; forwarding", file=sys.stderr, flush=True)
        elif kind == streams.ERROR:
            print(f"fleetctl: connection {control.get('stream')}: {reason}", file=sys.stderr)
        elif kind in ("close", "error"):
            raise ServerError(f"the session ended: {reason}")
