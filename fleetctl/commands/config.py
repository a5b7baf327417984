"""``fleetctl config get|set|unset``: configuration variables of the fleet, a group or a device.

Without ``--group`` or ``--device`` a command acts on the fleet level. A device gets the most
specific value of each key (device, then group, then fleet) in its roles' ``.env`` templates
as ``vars.KEY``. ``--secret`` values are sealed at rest and never shown again (``***``); a
secret given as a bare ``KEY`` is read from stdin (asked for on a terminal), so it stays out
of the shell's history and the process list.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import re
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from fleetcore import redact
from fleetcore.bounded import CONFIG_KEY
from fleetctl.commands import Subparsers, command, group
from fleetctl.errors import FleetctlError, Refused, ServerError, UsageError
from fleetctl.output import cell, columns
from fleetctl.session import Session

_KEY = re.compile(CONFIG_KEY)
_SCOPE_COLUMNS = columns(
    ("KEY", "key"), ("VALUE", "value"), ("SECRET", "secret"), ("UPDATED", "updated_at")
)
_EFFECTIVE_COLUMNS = columns(
    ("KEY", "key"), ("VALUE", "value"), ("FROM", "source"), ("OVERRIDES", "overrides")
)


def add(sub: Subparsers) -> None:
    actions = group(sub, "config", "configuration variables of the fleet, a group or a device")
    p = command(
        actions,
        "get",
        get,
        "list the variables set at one level (secret values as ***)",
        "List the variables set at the fleet level, or with --group/--device at that level; "
        "--effective (with --device) shows what the device gets and where each value is set.",
    )
    _scope_options(p)
    p.add_argument("keys", nargs="*", metavar="KEY", help="only these keys")
    p.add_argument(
        "--effective",
        action="store_true",
        help="with --device: the merged configuration the device gets, and if it applied it",
    )
    p = command(
        actions,
        "set",
        set_values,
        "set variables at one level, all or none",
        "Set KEY=VALUE pairs at the fleet level, or with --group/--device at that level. "
        "With --secret a bare KEY reads its value from stdin.",
    )
    _scope_options(p)
    p.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    p.add_argument(
        "--secret",
        action="store_true",
        help="encrypted at rest, shown as ***, sent only to the devices it applies to",
    )
    p = command(actions, "unset", unset, "remove variables from one level, all or none")
    _scope_options(p)
    p.add_argument("keys", nargs="+", metavar="KEY")


def _scope_options(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--group", metavar="G", help="the group level (default: the fleet)")
    scope.add_argument("--device", metavar="D", help="one device's own level")


def _scope(args: argparse.Namespace) -> tuple[str, str]:
    """(API path, name) of the level the options name."""
    if args.group is not None:
        return f"/config/groups/{quote(args.group, safe='')}", f"group {args.group}"
    if args.device is not None:
        return f"/config/devices/{quote(args.device, safe='')}", f"device {args.device}"
    return "/config/fleet", "the fleet"


def _check_keys(keys: list[str]) -> None:
    for key in keys:
        if not _KEY.match(key):
            raise UsageError(
                f"{key!r} is not a variable name",
                hint="names are environment variable names: A-Z, 0-9 and _, starting with a "
                "letter, at most 64 characters (CAMERA_FPS)",
            )
    if len(set(keys)) != len(keys):
        raise UsageError("a key is named twice")


def get(session: Session, args: argparse.Namespace) -> None:
    _check_keys(args.keys)
    if args.effective:
        if args.device is None:
            raise UsageError("--effective needs --device", hint="fleetctl config get --device D")
        _effective(session, args)
        return
    path, name = _scope(args)
    rows = _only(session.client.get(path)["variables"], args.keys, name)
    session.printer.table(rows, _SCOPE_COLUMNS)


def _only(rows: list[dict[str, Any]], keys: list[str], name: str) -> list[dict[str, Any]]:
    if not keys:
        return rows
    found = {row["key"]: row for row in rows}
    if missing := [key for key in keys if key not in found]:
        raise FleetctlError(
            f"{', '.join(missing)} not set at {name}",
            hint="fleetctl config get lists what is set; --effective with --device shows "
            "what a device gets from every level",
        )
    return [found[key] for key in keys]


def _effective(session: Session, args: argparse.Namespace) -> None:
    answer = session.client.get(f"/config/devices/{quote(args.device, safe='')}/effective")
    answer["variables"] = _only(answer["variables"], args.keys, f"device {args.device}")
    if session.printer.as_json:
        session.printer.data(answer)
        return
    session.printer.table(answer["variables"], _EFFECTIVE_COLUMNS)
    if answer["applied_digest"] == answer["digest"]:
        state = "applied"
    elif answer["applied_digest"] is None:
        state = "not reported yet"
    else:
        state = "not applied yet (the device runs an older configuration)"
    session.printer.message(f"digest {cell(answer['digest'][:12])}: {state}")


def _pairs(items: list[str], *, secret: bool) -> dict[str, str]:
    """``KEY=VALUE`` arguments (an empty value is a value); with ``--secret`` a bare ``KEY``
    reads its value from stdin."""
    pairs: dict[str, str] = {}
    bare = [item for item in items if "=" not in item]
    if bare and not secret:
        raise UsageError(f"{bare[0]!r} is not KEY=VALUE", hint="or add --secret to type it in")
    if len(bare) > 1:
        raise UsageError("only one secret value can be read from stdin per command")
    for item in items:
        key, sep, value = item.partition("=")
        pairs[key] = value if sep else _read_secret(key)
    _check_keys([item.partition("=")[0] for item in items])
    return pairs


def _read_secret(key: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(f"{key}: ")
    line = sys.stdin.readline()
    if not line:
        raise UsageError(f"no value for {key} on stdin")
    return line.rstrip("\r\n")


@contextlib.contextmanager
def _masked(values: list[str]) -> Iterator[None]:
    """Secret values out of anything printed, should a server or proxy quote them."""
    try:
        yield
    except Refused as err:
        hint = redact.secrets(err.hint, *values) if err.hint else None
        raise Refused(redact.secrets(str(err), *values), status=err.status, hint=hint) from None
    except ServerError as err:
        hint = redact.secrets(err.hint, *values) if err.hint else None
        raise ServerError(redact.secrets(str(err), *values), hint=hint) from None


def set_values(session: Session, args: argparse.Namespace) -> None:
    pairs = _pairs(args.pairs, secret=args.secret)
    path, name = _scope(args)
    body = {"set": {key: {"value": v, "secret": args.secret} for key, v in pairs.items()}}
    with _masked(list(pairs.values()) if args.secret else []):
        answer = session.client.call("PATCH", path, body=body)
    if session.printer.as_json:
        session.printer.data(answer)
        return
    session.printer.message(f"set {', '.join(pairs)} at {name}")


def unset(session: Session, args: argparse.Namespace) -> None:
    _check_keys(args.keys)
    path, name = _scope(args)
    answer = session.client.call("PATCH", path, body={"unset": args.keys})
    if session.printer.as_json:
        session.printer.data(answer)
        return
    session.printer.message(f"unset {', '.join(args.keys)} at {name}")
