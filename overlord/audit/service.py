"""Recording operator actions, in the transaction of the change, and reading them back.

:func:`record` adds the entry to the session that makes the change, so both commit or
neither does. The structured log line (logger ``overlord.audit``, JSON lines through
:mod:`fleetcore.logs`) is written once that transaction has committed: a refused or failed
change leaves neither a row nor a line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, event, or_, select
from sqlalchemy.orm import Session, SessionTransaction

from fleetcore.logs import request_id
from overlord.audit.models import (
    NAME_CHARS,
    OBJECT_ID_CHARS,
    SOURCE_CHARS,
    AuditAction,
    AuditEntry,
    AuditObject,
    Channel,
)
from overlord.auth.models import KeyRole
from overlord.db import utcnow
from overlord.errors import InvalidRequest

log = logging.getLogger("overlord.audit")
# Audit lines are written whatever the process's log level (-v or not): they are the record.
log.setLevel(logging.INFO)

MASK = "***"
# Fields never stored or logged, whatever an action hands in: credentials and their digests
# (``token``, ``device_token``, ``token_hash``, ...), but not a label that merely contains
# such a word.
_SECRET_NAMES = frozenset({"token", "password", "passphrase", "secret", "cookie", "csrf"})
_SECRET_SUFFIXES = tuple(f"_{name}" for name in (*_SECRET_NAMES, "hash"))
_PENDING = "audit_pending"


@dataclass(frozen=True)
class Actor:
    """Who acted: the key (id, name, role), the client address and where it came in.

    ``key_id`` is None for a failed login with an unknown token and for the server's CLI.
    """

    key_id: int | None
    name: str
    role: KeyRole | None
    source: str
    via: Channel


def masked(value: Any) -> Any:
    """``value`` as JSON data, with every field named like a credential replaced by ``***``."""
    if isinstance(value, Mapping):
        return {str(k): MASK if _is_secret(str(k)) else masked(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [masked(v) for v in items]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _is_secret(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES)


def record(
    session: Session,
    actor: Actor,
    action: AuditAction,
    *,
    object_type: AuditObject,
    object_id: str | int | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add the entry to ``session``'s transaction; logged when (and if) that commits."""
    entry = AuditEntry(
        at=utcnow(),
        actor_key_id=actor.key_id,
        actor_name=actor.name[:NAME_CHARS],
        actor_role=actor.role.value if actor.role is not None else None,
        source=actor.source[:SOURCE_CHARS],
        via=actor.via.value,
        action=action.value,
        object_type=object_type.value,
        object_id=None if object_id is None else str(object_id)[:OBJECT_ID_CHARS],
        before=masked(before) if before is not None else None,
        after=masked(after) if after is not None else None,
        request_id=request_id.get(),
    )
    session.add(entry)
    session.flush()
    session.info.setdefault(_PENDING, []).append(_log_fields(entry))
    return entry


def _log_fields(entry: AuditEntry) -> dict[str, Any]:
    return {
        "audit_id": entry.id,
        "action": entry.action,
        "object": object_name(entry.object_type, entry.object_id),
        "actor_key_id": entry.actor_key_id,
        "actor_name": entry.actor_name,
        "actor_role": entry.actor_role,
        "source": entry.source,
        "via": entry.via,
        "request_id": entry.request_id,
        # JSON text, so a JSON-lines parser (Loki's json stage) reads them back as data.
        "before": None if entry.before is None else json.dumps(entry.before, sort_keys=True),
        "after": None if entry.after is None else json.dumps(entry.after, sort_keys=True),
    }


def object_name(object_type: str, object_id: str | None) -> str:
    return object_type if object_id is None else f"{object_type}/{object_id}"


@event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    for fields in session.info.pop(_PENDING, ()):
        who = fields["actor_name"] or (
            f"key {fields['actor_key_id']}" if fields["actor_key_id"] else "unknown"
        )
        log.info(
            "%s %s by %s (%s) from %s via %s",
            fields["action"],
            fields["object"],
            who,
            fields["actor_role"] or "no role",
            fields["source"],
            fields["via"],
            extra=fields,
        )


@event.listens_for(Session, "after_transaction_end")
def _forget_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    # After a commit the list is gone already; after a rollback its entries never existed.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def parse_object(text: str) -> tuple[AuditObject | None, str | None]:
    """``rollout`` or ``rollout/12`` as (type, id); empty text is no object filter."""
    if not text:
        return None, None
    kind, _, ident = text.partition("/")
    try:
        return AuditObject(kind), ident or None
    except ValueError:
        known = ", ".join(o.value for o in AuditObject)
        raise InvalidRequest(f"no object type {kind!r}; the types are {known}") from None


@dataclass(frozen=True)
class AuditFilter:
    """``actor``: a key name, or a key id given as digits (either matches)."""

    actor: str | None = None
    action: AuditAction | None = None
    object_type: AuditObject | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _conditions(filters: AuditFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.actor is not None:
        by_name = AuditEntry.actor_name == filters.actor
        if filters.actor.isascii() and filters.actor.isdigit() and int(filters.actor) < 2**31:
            conditions.append(or_(by_name, AuditEntry.actor_key_id == int(filters.actor)))
        else:
            conditions.append(by_name)
    if filters.action is not None:
        conditions.append(AuditEntry.action == filters.action.value)
    if filters.object_type is not None:
        conditions.append(AuditEntry.object_type == filters.object_type.value)
    if filters.object_id is not None:
        conditions.append(AuditEntry.object_id == filters.object_id)
    if filters.since is not None:
        conditions.append(AuditEntry.at >= filters.since)
    if filters.until is not None:
        conditions.append(AuditEntry.at < filters.until)
    return conditions


def list_entries(
    session: Session, *, filters: AuditFilter, cursor: int | None, limit: int
) -> tuple[list[AuditEntry], int | None]:
    """Newest first, ``limit`` at most, below ``cursor`` (an id); and the next page's cursor."""
    query = select(AuditEntry).where(*_conditions(filters))
    if cursor is not None:
        query = query.where(AuditEntry.id < cursor)
    rows = list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None
