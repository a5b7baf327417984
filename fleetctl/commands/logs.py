"""``fleetctl logs DEVICE [-f]``: a live tail of a device's journal through a remote session
(ADR 0074). The session is opened, attached to, and ended when the command exits."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from fleetcore.websocket import Closed, WebSocket
from fleetctl.attach import leave, open_attached
from fleetctl.commands import Subparsers, command
from fleetctl.errors import ServerError
from fleetctl.session import Session

PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
QUIET_S = 2.0  # without -f: the tail is over once nothing came for this long
WAIT_S = 1.0


def add(sub: Subparsers) -> None:
    p = command(
        sub,
        "logs",
        tail,
        "a device's journal, live (viewer and up)",
        "Opens a log session; the device joins at its next desired-state poll. Without -f "
        "the command prints the last --lines entries and ends once the device has sent "
        f"nothing for {QUIET_S:.0f} s; with -f it follows until Ctrl-C or the session ends. "
        "The session ends when the command exits.",
    )
    p.add_argument("device", metavar="DEVICE", help="the device's id")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    p.add_argument("--unit", help="only this systemd unit, e.g. nginx.service")
    p.add_argument("--priority", choices=PRIORITIES, help="this priority and more urgent")
    p.add_argument("--lines", type=int, default=20, help="past entries first (0-1000)")


def line(entry: dict[str, Any]) -> str:
    """One journal entry as ``journalctl`` prints it: time, unit, identifier[pid]: message."""
    stamp = entry.get("__REALTIME_TIMESTAMP", "")
    when = (
        datetime.fromtimestamp(int(stamp) / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if stamp.isdigit()
        else "-"
    )
    who = entry.get("SYSLOG_IDENTIFIER") or entry.get("_SYSTEMD_UNIT") or "-"
    pid = f"[{entry['_PID']}]" if entry.get("_PID") else ""
    return f"{when} {who}{pid}: {entry.get('MESSAGE', '')}"


def tail(session: Session, args: argparse.Namespace) -> int:
    params = {"unit": args.unit, "priority": args.priority, "lines": args.lines}
    body = {"kind": "logs"} | {k: v for k, v in params.items() if v is not None}
    _session_id, socket = open_attached(session.client, args.device, body)
    try:
        return _print(socket, args, as_json=session.args.json)
    except KeyboardInterrupt:
        return 0
    finally:
        leave(socket)


def _print(socket: WebSocket, args: argparse.Namespace, *, as_json: bool) -> int:
    printed = 0
    while True:
        try:
            message = socket.receive(WAIT_S if args.follow or not printed else QUIET_S)
        except Closed as closed:
            raise ServerError(f"the session ended: {closed}") from None
        if message is None:
            if printed and not args.follow:
                return 0
            continue
        if isinstance(message, bytes):
            entry = json.loads(message)
            print(json.dumps(entry) if as_json else line(entry), flush=True)
            printed += 1
            continue
        control = json.loads(message)
        if control.get("type") == "dropped":
            print(f"fleetctl: {control.get('count')} entries dropped", file=sys.stderr)
        elif control.get("type") in ("close", "error"):
            # The device refused or stopped, or the Overlord ended it (idle, too long, admin).
            raise ServerError(f"the session ended: {control.get('reason', '')}")
