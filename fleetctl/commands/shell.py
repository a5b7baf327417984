"""``fleetctl shell DEVICE``: a terminal on a device through a remote shell session, and
``fleetctl recording SESSION``: a shell's asciicast recording (ADR 0074, shell slice).

When stdin is a terminal it is put in raw mode (every key, Ctrl-C included, goes to the
device) and restored on every way out; its size is sent at the start and on each SIGWINCH.
The command exits with the remote shell's exit status; a session that ends otherwise (the
device refused, idle, too long, ended by an admin) is one line on stderr and status 1.
Without a terminal, stdin is sent as it is and its end is a Ctrl-D for the remote shell.
Either way stdin is read from the shell's first output (its prompt) on: what is sent before
the device has joined would reach nobody.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from pathlib import Path

from fleetcore.atomic import atomic_write
from fleetcore.websocket import Closed, WebSocket
from fleetctl.attach import leave, open_attached
from fleetctl.commands import Subparsers, command
from fleetctl.errors import ServerError
from fleetctl.session import Session

WAIT_S = 0.5
END_OF_INPUT = b"\x04"


def add(sub: Subparsers) -> None:
    p = command(
        sub,
        "shell",
        run_shell,
        "a shell on a device, recorded (admin)",
        "Opens a shell session; the device joins at its next desired-state poll when its "
        "configuration (FLEET_REMOTE_SHELL=1) and its fleet.yaml (remote.shell: true) allow "
        "it. Exits with the remote shell's status. The session is recorded; admins read it "
        "with 'fleetctl recording SESSION'.",
    )
    p.add_argument("device", metavar="DEVICE", help="the device's id")
    r = command(sub, "recording", recording, "a shell session's asciicast v2 recording (admin)")
    r.add_argument("session", metavar="SESSION", help="the session's id")
    r.add_argument("-o", "--output", type=Path, help="write it to this file, not stdout")


def recording(session: Session, args: argparse.Namespace) -> int:
    cast: bytes = session.client.call("GET", f"/remote-sessions/{args.session}/recording", raw=True)
    if args.output is None:
        sys.stdout.buffer.write(cast)
        sys.stdout.flush()
    else:
        atomic_write(args.output, cast, mode=0o600)  # it may hold whatever was typed
    return 0


def run_shell(session: Session, args: argparse.Namespace) -> int:
    session_id, socket = open_attached(session.client, args.device, {"kind": "shell"})
    print(
        f"fleetctl: shell session {session_id} (recorded): waiting for {args.device} to join",
        file=sys.stderr,
    )
    try:
        with _terminal(sys.stdin.fileno()) as resized:
            return _relay(socket, sys.stdin.fileno(), sys.stdout.fileno(), resized)
    finally:
        leave(socket)


@contextlib.contextmanager
def _terminal(fd: int) -> Iterator[list[bool]]:
    """Raw mode while the shell runs, when ``fd`` is a terminal; yields a flag SIGWINCH sets
    (set at the start, so the first size goes out at once)."""
    resized = [os.isatty(fd)]
    saved = termios.tcgetattr(fd) if resized[0] else None
    previous = signal.getsignal(signal.SIGWINCH)
    if saved is not None:
        signal.signal(signal.SIGWINCH, lambda _sig, _frame: resized.__setitem__(0, True))
        tty.setraw(fd)
    try:
        yield resized
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, previous)


def _relay(socket: WebSocket, stdin: int, stdout: int, resized: list[bool]) -> int:
    status: int | None = None
    reading = True
    # A frame sent before the device joins has nobody to go to, so stdin is read from the
    # shell's first output on (its prompt: keys typed earlier wait in the terminal, piped
    # input in its pipe), and the size goes again then.
    joined = False
    on_terminal = os.isatty(stdin)
    try:
        while True:
            if resized[0]:
                resized[0] = False
                size = os.get_terminal_size(stdin)
                socket.send_text(json.dumps({"type": "resize", **_size(size)}))
            readers: list[int | WebSocket] = [socket, stdin] if reading and joined else [socket]
            ready, _, _ = select.select(readers, [], [], 0 if socket.pending() else WAIT_S)
            if stdin in ready:
                data = os.read(stdin, 4096)
                reading = bool(data)
                socket.send_bytes(data or END_OF_INPUT)
            while (message := socket.receive(0)) is not None:
                if isinstance(message, bytes):
                    resized[0] = resized[0] or (on_terminal and not joined)
                    joined = True
                    _write_all(stdout, message)
                    continue
                control = json.loads(message)
                if control.get("type") == "exit":
                    status = int(control["status"])
                elif control.get("type") in ("close", "error"):
                    if status is not None:
                        return status
                    raise ServerError(f"the session ended: {control.get('reason', '')}")
    except Closed as closed:
        if status is not None:
            return status
        raise ServerError(f"the session ended: {closed}") from None


def _size(size: os.terminal_size) -> dict[str, int]:
    return {"cols": min(max(size.columns, 1), 1000), "rows": min(max(size.lines, 1), 1000)}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
