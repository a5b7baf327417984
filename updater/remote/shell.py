"""The device's side of a remote shell (ADR 0074, shell slice): PTY bytes both ways.

One thread (the session's) waits on the socket and the terminal at once. Binary frames from
the Overlord are keystrokes for the terminal, ``resize`` frames set its size; what the shell
writes goes back as binary frames. Input the shell has not taken yet is kept (at most
:data:`MAX_BACKLOG` bytes, then the socket is not read until it drains), so a large paste
never blocks the thread while the shell is writing. The session ends when the shell exits
(everything it wrote, then an ``exit`` frame with its status), when the Overlord closes it,
when the agent stops, or at the device's own idle and length limits.
"""

from __future__ import annotations

import json
import select
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

from fleetcore.websocket import Closed, WebSocket
from updater.remote.terminal import Pty

WAIT_S = 0.25  # longest one wait on the socket and terminal: how often limits are checked
MAX_BACKLOG = 64 * 1024


@dataclass(frozen=True)
class ShellLimits:
    """The device's own bounds on a shell, whatever the Overlord enforces."""

    idle_s: float
    max_s: float


def serve(
    conn: WebSocket,
    stop: threading.Event,
    command: Sequence[str],
    limits: ShellLimits,
) -> str:
    """Runs ``command`` in a PTY for the session; the reason this side ends it."""
    try:
        term = Pty(command)
    except OSError as err:
        return f"cannot start the shell: {err}"
    try:
        return _relay(conn, stop, term, limits)
    finally:
        term.close()


def _relay(conn: WebSocket, stop: threading.Event, term: Pty, limits: ShellLimits) -> str:
    started = last = time.monotonic()
    backlog = b""
    while not stop.is_set():
        now = time.monotonic()
        if now - last >= limits.idle_s:
            return f"idle for {limits.idle_s:.0f} s (the device's limit)"
        if now - started >= limits.max_s:
            return f"open for {limits.max_s:.0f} s (the device's limit)"
        readers = [term.fd] + ([conn] if len(backlog) < MAX_BACKLOG else [])
        writers = [term.fd] if backlog else []
        wait = 0.0 if conn.pending() else WAIT_S
        ready, writable, _ = select.select(readers, writers, [], wait)
        if writable:
            backlog = backlog[term.write(backlog) :]
        if len(backlog) < MAX_BACKLOG:
            while (message := conn.receive(0)) is not None:
                last = time.monotonic()
                if isinstance(message, bytes):
                    backlog += message
                else:
                    _control(term, message)
        if term.fd in ready:
            output = term.read()
            if output is None:
                return _exited(conn, term)
            if output:
                last = time.monotonic()
                conn.send_bytes(output)
        elif term.exit_status() is not None and not ready:
            return _exited(conn, term)
    return "the agent stopped"


def _control(term: Pty, text: str) -> None:
    """Applies a control frame from the Overlord; raises :class:`Closed` at the end."""
    try:
        control = json.loads(text)
    except ValueError:
        return  # the Overlord only sends JSON control frames; anything else is noise
    if not isinstance(control, dict):
        return
    if control.get("type") in ("close", "error"):
        raise Closed(str(control.get("reason", "")))
    cols, rows = control.get("cols"), control.get("rows")
    if control.get("type") == "resize" and _dimension(cols) and _dimension(rows):
        term.resize(cols, rows)


def _dimension(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000


def _exited(conn: WebSocket, term: Pty) -> str:
    # The shell can write its last words and exit between one wait and the exit check (the
    # session's thread was not scheduled): what the terminal still holds goes first.
    while output := term.read():
        conn.send_bytes(output)
    term.close()
    status = term.exit_status()
    code = 255 if status is None else status
    conn.send_text(json.dumps({"type": "exit", "status": code}))
    return f"the shell exited with status {code}"
