"""Event ingestion (idempotent by device sequence number), history and alerts."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fleetcore.wire import Event, EventAck, EventKind
from overlord.audit import service as audit
from overlord.audit.models import AuditAction, AuditObject
from overlord.audit.service import Actor
from overlord.db import utcnow
from overlord.devices.models import Device
from overlord.errors import NotFound
from overlord.events.models import Alert, AlertKind, AlertRule, DeviceEvent

# (kind of update, outcome) as fleet_update_outcomes_total counts them.
OUTCOME_OF_EVENT: dict[EventKind, tuple[str, str]] = {
    EventKind.UPDATE_COMMITTED: ("os", "committed"),
    EventKind.ROLLBACK: ("os", "rolled_back"),
    EventKind.INSTALL_FAILED: ("os", "failed"),
    EventKind.VERSION_MARKED_BAD: ("os", "failed"),
    EventKind.ROLE_APPLIED: ("role", "committed"),
    EventKind.ROLE_ROLLBACK: ("role", "rolled_back"),
    EventKind.ROLE_FAILED: ("role", "failed"),
}


def ingest(
    session: Session, *, device: Device, events: list[Event]
) -> tuple[EventAck, list[Event]]:
    """Store the events not seen before; returns the ack and the newly stored events."""
    seqs = {e.seq for e in events}
    known = set(
        session.scalars(
            select(DeviceEvent.seq).where(
                DeviceEvent.device_id == device.id, DeviceEvent.seq.in_(seqs)
            )
        )
    )
    fresh: dict[int, Event] = {}
    for event in events:
        if event.seq not in known and event.seq not in fresh:
            fresh[event.seq] = event
    for event in fresh.values():
        session.add(
            DeviceEvent(
                device_id=device.id,
                seq=event.seq,
                time=event.time,
                kind=event.kind,
                version=str(event.version) if event.version is not None else None,
                message=event.message,
                reason=event.reason,
                data=event.data,
            )
        )
        _alert_for(session, device=device, event=event)
    device.last_event_seq = max(device.last_event_seq, *seqs)
    return EventAck(accepted=len(fresh), last_seq=device.last_event_seq), list(fresh.values())


def _alert_for(session: Session, *, device: Device, event: Event) -> None:
    kind = {
        EventKind.ROLLBACK: AlertKind.DEVICE_ROLLED_BACK,
        EventKind.SAFE_MODE_ENTERED: AlertKind.SAFE_MODE,
    }.get(event.kind)
    if kind is None or not rule_enabled(session, kind=kind):
        return
    detail = event.reason or event.message or "no reason given"
    version = f" {event.version}" if event.version is not None else ""
    raise_alert(
        session,
        kind=kind,
        subject=f"device/{device.id}",
        message=f"{device.hostname}: {event.kind.value}{version}: {detail}",
    )


def rule_enabled(session: Session, *, kind: AlertKind) -> bool:
    rule = session.get(AlertRule, kind)
    return rule is None or rule.enabled


def raise_alert(session: Session, *, kind: AlertKind, subject: str, message: str) -> None:
    session.add(Alert(kind=kind, subject=subject, message=message))


def resolve_alerts(session: Session, *, subject: str) -> None:
    session.execute(
        update(Alert)
        .where(Alert.subject == subject, Alert.resolved_at.is_(None))
        .values(resolved_at=utcnow())
    )


def list_events(
    session: Session, *, device_id: str, limit: int, offset: int
) -> tuple[list[DeviceEvent], int]:
    where = DeviceEvent.device_id == device_id
    total = session.scalar(select(func.count()).select_from(DeviceEvent).where(where)) or 0
    rows = session.scalars(
        select(DeviceEvent)
        .where(where)
        .order_by(DeviceEvent.seq.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


def list_alerts(session: Session, *, open_only: bool, limit: int) -> list[Alert]:
    query = select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
    if open_only:
        query = query.where(Alert.resolved_at.is_(None))
    return list(session.scalars(query))


def set_rule(session: Session, *, kind: AlertKind, enabled: bool, actor: Actor) -> AlertRule:
    rule = session.get(AlertRule, kind)
    if rule is None:
        rule = AlertRule(kind=kind, enabled=enabled)
        session.add(rule)
        before = True  # no row: the kind's alerts are raised (rule_enabled)
    else:
        before = rule.enabled
    rule.enabled = enabled
    audit.record(
        session,
        actor,
        AuditAction.ALERT_RULE_SET,
        object_type=AuditObject.ALERT_RULE,
        object_id=kind.value,
        before={"enabled": before},
        after={"enabled": enabled},
    )
    return rule


def list_rules(session: Session) -> list[AlertRule]:
    stored = {r.kind: r for r in session.scalars(select(AlertRule))}
    return [stored.get(kind) or AlertRule(kind=kind, enabled=True) for kind in AlertKind]


def resolve_alert(session: Session, *, alert_id: int, actor: Actor) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    before = alert.resolved_at
    if alert.resolved_at is None:
        alert.resolved_at = utcnow()
    audit.record(
        session,
        actor,
        AuditAction.ALERT_RESOLVE,
        object_type=AuditObject.ALERT,
        object_id=alert_id,
        before={"subject": alert.subject, "resolved_at": before},
        after={"subject": alert.subject, "resolved_at": alert.resolved_at},
    )
    return alert
