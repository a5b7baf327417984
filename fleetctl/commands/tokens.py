"""``fleetctl tokens create|list|revoke`` (admin tokens only)."""

from __future__ import annotations

import argparse

from fleetctl.commands import Subparsers, command, group
from fleetctl.output import columns
from fleetctl.session import Session

ROLES = ("admin", "operator", "viewer", "enrollment")
_COLUMNS = columns(
    ("ID", "id"),
    ("ROLE", "role"),
    ("NAME", "name"),
    ("DEVICE", "device_id"),
    ("CREATED", "created_at"),
    ("EXPIRES", "expires_at"),
    ("REVOKED", "revoked_at"),
)


def add(sub: Subparsers) -> None:
    actions = group(sub, "tokens", "operator and enrolment tokens (admin)")
    p = command(
        actions,
        "create",
        create,
        "create a token; it is printed once and never again",
    )
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument("--name", default="", help="who or what it is for")
    p.add_argument("--expires-in", type=int, metavar="SECONDS")
    p = command(actions, "list", list_tokens, "list tokens (never their secrets)")
    p.add_argument("--all", action="store_true", help="include device credentials")
    p = command(actions, "revoke", revoke, "revoke a token at once, on every replica")
    p.add_argument("id", type=int)


def create(session: Session, args: argparse.Namespace) -> None:
    body = {"role": args.role, "name": args.name, "expires_in_s": args.expires_in}
    created = session.client.call("POST", "/tokens", body=body)
    if session.printer.as_json:
        session.printer.data(created)
        return
    session.printer.record(created, ("id", "role", "name", "expires_at"))
    # The one place a token is printed: it is the command's product, shown once.
    session.printer.message(f"token     {created['token']}")
    session.printer.message("(shown once: store it now)")


def list_tokens(session: Session, args: argparse.Namespace) -> None:
    keys = session.client.get("/tokens")
    if not args.all:
        keys = [k for k in keys if k["role"] != "device"]
    session.printer.table(keys, _COLUMNS)


def revoke(session: Session, args: argparse.Namespace) -> None:
    session.client.call("DELETE", f"/tokens/{args.id}")
    if session.printer.as_json:
        session.printer.data({"revoked": args.id})
    else:
        session.printer.message(f"revoked token {args.id}")
