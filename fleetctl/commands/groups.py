"""``fleetctl groups list|create|delete``: device groups and their maintenance windows."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from fleetctl.commands import Subparsers, command, group
from fleetctl.errors import Refused, UsageError
from fleetctl.output import columns
from fleetctl.session import Session

_COLUMNS = columns(
    ("NAME", "name"),
    ("DEVICES", "devices"),
    ("WINDOW START", "window_start"),
    ("WINDOW END", "window_end"),
    ("POLL S", "poll_interval_s"),
    ("DESCRIPTION", "description"),
)


def add(sub: Subparsers) -> None:
    actions = group(sub, "groups", "device groups: maintenance windows and poll intervals")
    command(actions, "list", list_groups, "list groups with their device counts")
    p = command(actions, "create", create, "create a group")
    p.add_argument("name")
    p.add_argument("--description", default="")
    p.add_argument(
        "--window", metavar="HH:MM-HH:MM", help="UTC maintenance window; may wrap midnight"
    )
    p.add_argument("--poll-interval", type=int, metavar="SECONDS")
    p = command(actions, "delete", delete, "delete an empty group")
    p.add_argument("name")


def list_groups(session: Session, _args: argparse.Namespace) -> None:
    session.printer.table(session.client.get("/groups"), _COLUMNS)


def _window(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    start, sep, end = text.partition("-")
    if not sep or not start or not end:
        raise UsageError(f"--window must be HH:MM-HH:MM, not {text!r}")
    return {"window_start": start, "window_end": end}


def create(session: Session, args: argparse.Namespace) -> None:
    body = {"description": args.description, "poll_interval_s": args.poll_interval}
    body |= _window(args.window)
    # PUT creates or replaces; 'create' must not silently reset an existing group's window.
    if any(g["name"] == args.name for g in session.client.get("/groups")):
        raise Refused(
            f"group {args.name!r} already exists",
            status=409,
            hint="pick another name, or delete it first",
        )
    created = session.client.call("PUT", f"/groups/{quote(args.name, safe='')}", body=body)
    session.printer.record(created)


def delete(session: Session, args: argparse.Namespace) -> None:
    session.client.call("DELETE", f"/groups/{quote(args.name, safe='')}")
    if session.printer.as_json:
        session.printer.data({"deleted": args.name})
    else:
        session.printer.message(f"deleted group {args.name}")
