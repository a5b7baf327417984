"""Opening, listing and ending remote sessions, with the roles, policy and limits of ADR 0074.

Timeouts are applied whenever a device's sessions are read or changed (:func:`expire`), in
the transaction of that read or change, so a session is never shown open past its limits;
each end is audited.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetcore.wire import DesiredRemote
from overlord import invalidation
from overlord.audit import service as audit
from overlord.audit.models import AuditAction, AuditObject, Channel
from overlord.audit.service import Actor
from overlord.auth.models import OPERATOR_RANK, KeyRole
from overlord.configvars import service as configvars
from overlord.db import utcnow
from overlord.devices import changes
from overlord.devices.models import Device
from overlord.errors import Conflict, Forbidden, NotFound
from overlord.remote.models import (
    OPEN_STATES,
    EndReason,
    RemoteSession,
    SessionKind,
    SessionState,
)
from overlord.remote.schemas import OpenSession
from overlord.settings import Settings

OVERLORD = Actor(None, "overlord", None, "overlord", Channel.SCHEDULER)
ROLE_NEEDED = {
    SessionKind.LOGS: KeyRole.VIEWER,
    SessionKind.SHELL: KeyRole.ADMIN,
    SessionKind.FORWARD: KeyRole.ADMIN,
}
# The configuration variable that allows a kind for a device, and what its absence means.
POLICY = {
    SessionKind.LOGS: ("FLEET_REMOTE_LOGS", True),
    SessionKind.SHELL: ("FLEET_REMOTE_SHELL", False),
    SessionKind.FORWARD: ("FLEET_REMOTE_FORWARD", False),
}
MAX_OPEN = {SessionKind.LOGS: 4, SessionKind.SHELL: 1, SessionKind.FORWARD: 4}
# More than one shell per device at a time, when the device's configuration allows it.
SHELLS_KEY, MAX_SHELLS = "FLEET_REMOTE_SHELLS", 4
LIST_LIMIT = 100


@dataclass(frozen=True)
class Limits:
    idle_timeout_s: int
    max_length_s: int
    join_timeout_s: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            idle_timeout_s=settings.remote_idle_timeout_s,
            max_length_s=settings.remote_max_length_s,
            join_timeout_s=settings.remote_join_timeout_s,
        )


def _configured(session: Session, device: Device, key: str) -> str | None:
    """The value of ``key`` for the device (device over group over fleet), if set."""
    for item in configvars.effective(session, device_id=device.id, group=device.group_name):
        if item.row.key == key:
            return item.row.value
    return None


def allowed(session: Session, device: Device, kind: SessionKind) -> bool:
    """Whether the device's configuration (device over group over fleet) allows ``kind``."""
    key, default = POLICY[kind]
    value = _configured(session, device, key)
    return default if value is None else value == "1"


def max_open(session: Session, device: Device, kind: SessionKind) -> int:
    """How many sessions of ``kind`` the device may have open at once: one shell unless
    ``FLEET_REMOTE_SHELLS`` (2..4) allows more; a value outside that range counts as 1."""
    if kind is not SessionKind.SHELL:
        return MAX_OPEN[kind]
    value = _configured(session, device, SHELLS_KEY) or ""
    return int(value) if value.isdigit() and 1 <= int(value) <= MAX_SHELLS else MAX_OPEN[kind]


def open_session(
    session: Session, actor: Actor, device_id: str, request: OpenSession, limits: Limits
) -> RemoteSession:
    """A pending session for the device, or the one clear reason it is refused."""
    kind = request.kind
    needed = ROLE_NEEDED[kind]
    if actor.role is None or OPERATOR_RANK.get(actor.role, 0) < OPERATOR_RANK[needed]:
        raise Forbidden(f"a {kind.value} session needs the {needed.value} role or higher")
    # The device's row lock serialises opens for one device (on PostgreSQL), so two admins
    # cannot both get "the" shell.
    device = session.get(Device, device_id, with_for_update=True)
    if device is None:
        raise NotFound(f"no device {device_id}")
    if not allowed(session, device, kind):
        key, _default = POLICY[kind]
        raise Forbidden(
            f"{kind.value} sessions are off for device {device_id}: set {key}=1 for the "
            "device, its group or the fleet"
        )
    now = utcnow()
    open_rows = expire(session, device_id, limits, now=now)
    limit = max_open(session, device, kind)
    if sum(1 for row in open_rows if row.kind is kind) >= limit:
        raise Conflict(
            f"device {device_id} already has {limit} open {kind.value} session(s); end one first"
        )
    row = RemoteSession(
        id=secrets.token_urlsafe(16),
        device_id=device_id,
        kind=kind,
        state=SessionState.PENDING,
        params=request.params(),
        opened_by_key_id=actor.key_id,
        opened_by=actor.name,
        opened_at=now,
        last_activity_at=now,
    )
    session.add(row)
    changes.touch(session, [device_id])
    # After the device's own announcement: a replica drops its cached desired state before
    # it wakes the device's long-poll (ADR 0083).
    invalidation.announce(session, invalidation.remote_session(device_id))
    _audit(
        session,
        actor,
        AuditAction.REMOTE_OPEN,
        device_id,
        {"session": row.id, "kind": kind, **row.params},
    )
    return row


def named_session(session: Session, device_id: str, *, join_timeout_s: int) -> DesiredRemote | None:
    """The session the device's desired state names: its oldest active one, else its oldest
    pending one not yet past the join timeout (so a stale row never keeps it polling fast)."""
    recent = utcnow() - timedelta(seconds=join_timeout_s)
    row = session.scalars(
        select(RemoteSession)
        .where(
            RemoteSession.device_id == device_id,
            (RemoteSession.state == SessionState.ACTIVE)
            | ((RemoteSession.state == SessionState.PENDING) & (RemoteSession.opened_at > recent)),
        )
        # "active" sorts before "pending": the values are stored as strings.
        .order_by(RemoteSession.state, RemoteSession.opened_at, RemoteSession.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    return DesiredRemote(session=row.id, kind=row.kind.value, **row.params)


def due(row: RemoteSession, limits: Limits, now: datetime) -> EndReason | None:
    """Why ``row`` must end at ``now``, or None while it is within its limits."""
    if row.state is SessionState.PENDING:
        if now - row.opened_at >= timedelta(seconds=limits.join_timeout_s):
            return EndReason.JOIN_TIMEOUT
    elif row.state is SessionState.ACTIVE:
        if now - (row.joined_at or row.opened_at) >= timedelta(seconds=limits.max_length_s):
            return EndReason.EXPIRED
        if now - row.last_activity_at >= timedelta(seconds=limits.idle_timeout_s):
            return EndReason.IDLE
    return None


def expire(
    session: Session, device_id: str, limits: Limits, *, now: datetime | None = None
) -> list[RemoteSession]:
    """Ends the device's open sessions that are past a limit; returns those still open."""
    now = now or utcnow()
    query = select(RemoteSession).where(
        RemoteSession.device_id == device_id, RemoteSession.state.in_(OPEN_STATES)
    )
    still_open = []
    for row in session.scalars(query.order_by(RemoteSession.opened_at)):
        reason = due(row, limits, now)
        if reason is None:
            still_open.append(row)
        else:
            _end(session, OVERLORD, row, reason, f"{reason.value} limit reached", now)
    return still_open


def sweep(session: Session, limits: Limits) -> int:
    """Ends every open session past a limit, whether or not anyone reads it (the scheduler's
    job); returns how many devices had open sessions."""
    query = select(RemoteSession.device_id).where(RemoteSession.state.in_(OPEN_STATES))
    device_ids = sorted(set(session.scalars(query)))
    for device_id in device_ids:
        expire(session, device_id, limits)
    return len(device_ids)


def list_sessions(
    session: Session, device_id: str, limits: Limits, *, open_only: bool
) -> list[RemoteSession]:
    """The device's sessions, newest first (at most :data:`LIST_LIMIT`)."""
    if session.get(Device, device_id) is None:
        raise NotFound(f"no device {device_id}")
    expire(session, device_id, limits)
    query = select(RemoteSession).where(RemoteSession.device_id == device_id)
    if open_only:
        query = query.where(RemoteSession.state.in_(OPEN_STATES))
    order = (RemoteSession.opened_at.desc(), RemoteSession.id)
    return list(session.scalars(query.order_by(*order).limit(LIST_LIMIT)))


def get_session(session: Session, session_id: str, limits: Limits) -> RemoteSession:
    row = session.get(RemoteSession, session_id)
    if row is None:
        raise NotFound(f"no remote session {session_id}")
    expire(session, row.device_id, limits)
    return row


def end_session(session: Session, actor: Actor, session_id: str, limits: Limits) -> RemoteSession:
    """Ends an open session: its opener or any admin may."""
    row = get_session(session, session_id, limits)
    is_admin = actor.role is KeyRole.ADMIN
    if not is_admin and (actor.key_id is None or actor.key_id != row.opened_by_key_id):
        raise Forbidden("only the session's opener or an admin can end it")
    if row.state is SessionState.ENDED:
        reason = row.end_reason.value if row.end_reason else "unknown"
        raise Conflict(f"remote session {session_id} has already ended ({reason})")
    _end(session, actor, row, EndReason.OPERATOR, f"ended by {actor.name}", utcnow())
    return row


def _end(
    session: Session,
    actor: Actor,
    row: RemoteSession,
    reason: EndReason,
    detail: str,
    now: datetime,
) -> None:
    before = {"session": row.id, "kind": row.kind, "state": row.state}
    row.state = SessionState.ENDED
    row.ended_at = now
    row.end_reason = reason
    row.end_detail = detail[:200]
    changes.touch(session, [row.device_id])
    after = {"session": row.id, "state": row.state, "reason": reason}
    _audit(session, actor, AuditAction.REMOTE_END, row.device_id, after, before=before)


def join(session: Session, device_id: str, session_id: str, limits: Limits) -> RemoteSession:
    """The device's join: its own open session, still allowed by its configuration."""
    row = get_session(session, session_id, limits)
    if row.device_id != device_id:
        raise NotFound(f"no remote session {session_id} for device {device_id}")
    if row.state is not SessionState.PENDING:
        raise Conflict(f"remote session {session_id} is {row.state.value}, not pending")
    device = session.get(Device, device_id)
    if device is None or not allowed(session, device, row.kind):
        _end(session, OVERLORD, row, EndReason.DEVICE, "turned off by configuration", utcnow())
        raise Forbidden(f"{row.kind.value} sessions are off for device {device_id}")
    row.state = SessionState.ACTIVE
    row.joined_at = row.last_activity_at = utcnow()
    return row


def attachable(session: Session, actor: Actor, session_id: str, limits: Limits) -> RemoteSession:
    """The open session an operator attaches to, the role of its kind checked again."""
    row = get_session(session, session_id, limits)
    needed = ROLE_NEEDED[row.kind]
    if actor.role is None or OPERATOR_RANK.get(actor.role, 0) < OPERATOR_RANK[needed]:
        raise Forbidden(f"a {row.kind.value} session needs the {needed.value} role or higher")
    if row.state is SessionState.ENDED:
        raise Conflict(f"remote session {session_id} has ended")
    return row


def finish(session: Session, session_id: str, reason: EndReason, detail: str) -> None:
    """Ends a session its relay saw end (device close, error, timeout), unless already ended."""
    row = session.get(RemoteSession, session_id, with_for_update=True)
    if row is not None and row.state is not SessionState.ENDED:
        _end(session, OVERLORD, row, reason, detail, utcnow())


def stream_event(
    session: Session,
    actor: Actor,
    row: RemoteSession,
    side: str,
    event: str,
    stream: int,
    reason: str,
) -> None:
    """Audits one stream of a forward opening, closing or failing, as the ``side`` that said
    so (the bytes it carries are not recorded)."""
    after: dict[str, Any] = {"session": row.id, "stream": stream, "event": event, "by": side}
    if reason:
        after["reason"] = reason
    _audit(session, actor, AuditAction.REMOTE_STREAM, row.device_id, after)


def _audit(
    session: Session,
    actor: Actor,
    action: AuditAction,
    device_id: str,
    after: dict[str, Any],
    *,
    before: dict[str, Any] | None = None,
) -> None:
    audit.record(
        session,
        actor,
        action,
        object_type=AuditObject.DEVICE,
        object_id=device_id,
        before=before,
        after=after,
    )
