"""``fleetctl devices list|show|set-status|rotate-credential|label|move-group``."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from fleetctl.commands import Subparsers, command, group, key_values
from fleetctl.errors import UsageError
from fleetctl.output import columns
from fleetctl.session import Session

STATUSES = ("online", "offline", "updating", "failed", "safe_mode")
ADMIN_STATUSES = ("active", "quarantined", "decommissioned")
_LIST_COLUMNS = columns(
    ("ID", "id"),
    ("HOSTNAME", "hostname"),
    ("HARDWARE", "hardware"),
    ("GROUP", "group"),
    ("STATUS", "status"),
    ("ADMIN", "admin_status"),
    ("VERSION", "image_version"),
    ("LAST SEEN", "last_seen"),
)
_SHOW_KEYS = (
    "id",
    "hostname",
    "hardware",
    "serial",
    "key_fingerprint",
    "group",
    "labels",
    "admin_status",
    "status",
    "health",
    "image_version",
    "booted_slot",
    "committed_slot",
    "update_state",
    "desired_os_version",
    "desired_roles",
    "safe_mode",
    "enrolled_at",
    "last_seen",
    "uptime_s",
    "free_data_bytes",
    "dropped_events",
)


def add(sub: Subparsers) -> None:
    actions = group(sub, "devices", "list, inspect and manage devices")

    p = command(actions, "list", list_devices, "list devices, newest enrolment first")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--group")
    p.add_argument("--label", help="KEY=VALUE")
    p.add_argument("--role")
    p.add_argument("--image-version")
    p.add_argument("--board", help="the board the device reports: pi4, pi400, cm4, pi5, ...")
    p.add_argument(
        "--bootloader-below",
        metavar="VERSION",
        help="devices whose EEPROM bootloader is older than this bootloader release, or unknown",
    )
    p.add_argument("--limit", type=int, default=100, help="at most this many (1-500)")
    p.add_argument("--offset", type=int, default=0)

    p = command(actions, "show", show, "one device's state, desired state and roles")
    p.add_argument("device")

    p = command(
        actions,
        "set-status",
        set_status,
        "quarantine, decommission or reactivate a device (admin)",
        "quarantined: the device gets no updates; decommissioned: its credential is refused.",
    )
    p.add_argument("device")
    p.add_argument("status", choices=ADMIN_STATUSES)

    p = command(
        actions,
        "rotate-credential",
        rotate_credential,
        "revoke a device's credential and unbind its key (admin)",
        "For a lost or copied key: the device must enrol again with an enrolment token.",
    )
    p.add_argument("device")

    p = command(actions, "label", label, "set or remove labels (other labels stay)")
    p.add_argument("device")
    p.add_argument("labels", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--remove", action="append", default=[], metavar="KEY")

    p = command(actions, "move-group", move_group, "put a device in a group, or out of it")
    p.add_argument("device")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("group", nargs="?")
    where.add_argument("--none", action="store_true", help="take it out of its group")


def _path(device_id: str) -> str:
    return f"/devices/{quote(device_id, safe='')}"


def list_devices(session: Session, args: argparse.Namespace) -> None:
    if args.label is not None:
        key_values([args.label], "--label")
    page = session.client.get(
        "/devices",
        params={
            "status": args.status,
            "group": args.group,
            "label": args.label,
            "role": args.role,
            "image_version": args.image_version,
            "board": args.board,
            "bootloader_below": args.bootloader_below,
            "limit": args.limit,
            "offset": args.offset,
        },
    )
    if session.printer.as_json:
        session.printer.data(page)
        return
    session.printer.table(page["items"], _LIST_COLUMNS)
    shown = len(page["items"])
    if shown < page["total"]:
        session.printer.message(
            f"{shown} of {page['total']} devices from offset {page['offset']} "
            "(--offset and --limit page through)"
        )


def _print_device(session: Session, device: dict[str, Any]) -> None:
    session.printer.record(device, _SHOW_KEYS)
    for hold in device.get("held_back") or []:
        session.printer.message(
            f"held back: {hold['version']} (rollout {hold['rollout']}): {hold['reason']}"
        )
    if not session.printer.as_json and device.get("roles"):
        session.printer.message("")
        session.printer.table(
            device["roles"],
            columns(("ROLE", "name"), ("VERSION", "version"), ("HEALTH", "health")),
        )


def show(session: Session, args: argparse.Namespace) -> None:
    _print_device(session, session.client.get(_path(args.device)))


def set_status(session: Session, args: argparse.Namespace) -> None:
    device = session.client.call(
        "PATCH", f"{_path(args.device)}/status", body={"status": args.status}
    )
    session.printer.record(device, ("id", "hostname", "admin_status", "status"))


def rotate_credential(session: Session, args: argparse.Namespace) -> None:
    device = session.client.call("POST", f"{_path(args.device)}/rotate-credential")
    session.printer.record(device, ("id", "hostname", "key_fingerprint"))


def label(session: Session, args: argparse.Namespace) -> None:
    changes = key_values(args.labels, "a label")
    if not changes and not args.remove:
        raise UsageError("nothing to change", hint="give KEY=VALUE labels or --remove KEY")
    clash = set(changes) & set(args.remove)
    if clash:
        raise UsageError(f"label {sorted(clash)[0]!r} is both set and removed")
    # The API replaces the whole set; a concurrent edit by someone else in between is lost,
    # which is why this prints the resulting set.
    current = session.client.get(_path(args.device))["labels"]
    labels = {k: v for k, v in current.items() if k not in args.remove} | changes
    device = session.client.call("PATCH", _path(args.device), body={"labels": labels})
    session.printer.record(device, ("id", "hostname", "labels"))


def move_group(session: Session, args: argparse.Namespace) -> None:
    target = None if args.none else args.group
    device = session.client.call("PATCH", _path(args.device), body={"group": target})
    session.printer.record(device, ("id", "hostname", "group"))
