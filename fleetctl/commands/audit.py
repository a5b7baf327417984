"""``fleetctl audit list``: who changed what, when and from where (operator or admin)."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetctl.commands import Subparsers, command, group
from fleetctl.errors import UsageError
from fleetctl.output import columns
from fleetctl.session import Session

_AGE = re.compile(r"^(\d{1,9})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_COLUMNS = columns(
    ("ID", "id"),
    ("AT", "at"),
    ("ACTOR", "actor"),
    ("ROLE", "actor_role"),
    ("SOURCE", "source"),
    ("VIA", "via"),
    ("ACTION", "action"),
    ("OBJECT", "object"),
    ("CHANGE", "change"),
)


def add(sub: Subparsers) -> None:
    actions = group(sub, "audit", "the audit log: every operator action (operator or admin)")
    p = command(
        actions,
        "list",
        list_entries,
        "list audit entries, newest first",
        "Entries are never changed or deleted. A full page ends with the --cursor that "
        "continues below it.",
    )
    p.add_argument("--actor", help="a token's name, or its id")
    p.add_argument("--action", help="one action, e.g. rollout.pause or dashboard.login_failed")
    p.add_argument("--object", metavar="TYPE[/ID]", help="e.g. rollout, rollout/12, device/ID")
    p.add_argument(
        "--since", metavar="TIME", help="ISO 8601 (UTC unless it names a zone) or an age: 30m, 7d"
    )
    p.add_argument("--until", metavar="TIME", help="before this time; the same forms")
    p.add_argument("--limit", type=int, default=50, help="entries per page (1-500)")
    p.add_argument("--cursor", type=int, help="continue below this entry id")


def when(text: str, option: str, *, now: datetime | None = None) -> str:
    """An ISO 8601 time (naive means UTC) or an age before ``now``, as ISO 8601 with a zone."""
    age = _AGE.fullmatch(text)
    try:
        if age:
            ago = timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
            return ((now or datetime.now(UTC)) - ago).isoformat()
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise UsageError(
            f"{option} must be an ISO 8601 time or an age such as 12h or 7d, not {text!r}"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """What changed, in one short line: ``state: running -> paused``, ``name=x`` for a new
    object, ``deleted`` for a removed one."""
    if before is not None and after is None:
        return "deleted"
    before, after = before or {}, after or {}
    parts = []
    for key in sorted(set(before) | set(after)):
        if key in before and before[key] == after.get(key):
            continue
        if key in before:
            parts.append(f"{key}: {_value(before[key])} -> {_value(after.get(key))}")
        else:
            parts.append(f"{key}={_value(after[key])}")
    return "; ".join(parts) or "-"


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    actor = entry.get("actor_name") or (
        f"key {entry['actor_key_id']}" if entry.get("actor_key_id") is not None else None
    )
    kind, ident = entry.get("object_type"), entry.get("object_id")
    return entry | {
        "actor": actor,
        "object": kind if ident is None else f"{kind}/{ident}",
        "change": change(entry.get("before"), entry.get("after")),
    }


def list_entries(session: Session, args: argparse.Namespace) -> None:
    page = session.client.get(
        "/audit",
        params={
            "actor": args.actor,
            "action": args.action,
            "object": args.object,
            "since": when(args.since, "--since") if args.since else None,
            "until": when(args.until, "--until") if args.until else None,
            "limit": args.limit,
            "cursor": args.cursor,
        },
    )
    if session.printer.as_json:
        session.printer.data(page)
        return
    session.printer.table([_row(e) for e in page["items"]], _COLUMNS)
    if page.get("next_cursor") is not None:
        session.printer.message(f"older entries: add --cursor {page['next_cursor']}")
