"""Device registry: enrolment, heartbeats, desired state and the operator's queries."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import Counter
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import ColumnElement, and_, delete, func, not_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetcore import eeprom, httpsig
from fleetcore.release import manifest_target, role_target
from fleetcore.version import Version
from fleetcore.wire import (
    FAILED_STATES,
    IN_PROGRESS_STATES,
    BoardReport,
    BootloaderReport,
    BootMode,
    DesiredBootloader,
    DesiredOS,
    DesiredPrestage,
    DesiredRole,
    DesiredState,
    RegisterRequest,
    RegisterResponse,
    UpdateState,
)
from overlord.audit import service as audit
from overlord.audit.models import AuditAction, AuditObject
from overlord.audit.service import Actor
from overlord.auth import service as auth_service
from overlord.auth.models import KeyRole
from overlord.auth.service import Principal
from overlord.configvars import service as configvars
from overlord.configvars.sealing import Sealer
from overlord.db import utcnow

# Imported for its side effect: the session hook that writes the desired-state change log.
from overlord.devices import changes as _changes  # noqa: F401
from overlord.devices.models import AdminStatus, Device, DeviceHeartbeat
from overlord.devices.schemas import (
    CachedDesiredState,
    DeviceAttributesUpdate,
    DeviceFilter,
    DevicePublic,
    FleetStatus,
    LabelCount,
    RolloutHold,
    label_index,
    role_statuses,
)
from overlord.errors import AuthError, Forbidden, InvalidRequest, NotFound
from overlord.remote import service as remote
from overlord.rollouts.models import DeviceGroup

_R = TypeVar("_R", bound=BaseModel)
# How often a device that staged its hint polls while the rollout runs (ADR 0082): admission
# is then noticed within seconds rather than a whole poll interval.
STAGED_POLL_S = 10


def fleet_status(
    *,
    last_seen: datetime | None,
    safe_mode: bool,
    update_state: UpdateState,
    now: datetime,
    offline_after_s: int,
) -> FleetStatus:
    """Pure status rule, mirrored in SQL by :func:`status_clause`."""
    if last_seen is None or last_seen < now - timedelta(seconds=offline_after_s):
        return FleetStatus.OFFLINE
    if safe_mode:
        return FleetStatus.SAFE_MODE
    if update_state in FAILED_STATES:
        return FleetStatus.FAILED
    if update_state in IN_PROGRESS_STATES:
        return FleetStatus.UPDATING
    return FleetStatus.ONLINE


def status_clause(
    status: FleetStatus, *, now: datetime, offline_after_s: int
) -> ColumnElement[bool]:
    cutoff = now - timedelta(seconds=offline_after_s)
    online = and_(Device.last_seen.is_not(None), Device.last_seen >= cutoff)
    if status is FleetStatus.OFFLINE:
        return not_(online)
    if status is FleetStatus.SAFE_MODE:
        return and_(online, Device.safe_mode.is_(True))
    live = and_(online, Device.safe_mode.is_(False))
    if status is FleetStatus.FAILED:
        return and_(live, Device.update_state.in_(FAILED_STATES))
    if status is FleetStatus.UPDATING:
        return and_(live, Device.update_state.in_(IN_PROGRESS_STATES))
    return and_(live, Device.update_state.not_in(FAILED_STATES | IN_PROGRESS_STATES))


def to_public(
    device: Device,
    *,
    now: datetime,
    offline_after_s: int,
    board: BoardReport | None = None,
    bootloader: BootloaderReport | None = None,
    held_back: list[RolloutHold] | None = None,
) -> DevicePublic:
    return DevicePublic(
        id=device.id,
        hostname=device.hostname,
        hardware=device.hardware,
        serial=device.serial,
        key_fingerprint=device.key_fingerprint,
        key_proved_at=device.key_proved_at,
        group=device.group_name,
        labels=device.labels,
        admin_status=device.admin_status,
        status=fleet_status(
            last_seen=device.last_seen,
            safe_mode=device.safe_mode,
            update_state=device.update_state,
            now=now,
            offline_after_s=offline_after_s,
        ),
        enrolled_at=device.enrolled_at,
        last_seen=device.last_seen,
        image_version=device.image_version,
        staged_version=device.staged_version,
        booted_slot=device.booted_slot,
        committed_slot=device.committed_slot,
        update_state=device.update_state,
        health=device.health,
        roles=role_statuses(device.roles),
        safe_mode=device.safe_mode,
        free_data_bytes=device.free_data_bytes,
        uptime_s=device.uptime_s,
        dropped_events=device.dropped_events,
        desired_os_version=device.desired_os_version,
        desired_roles=device.desired_roles,
        desired_safe_mode=device.desired_safe_mode,
        node_exporter=device.node_exporter,
        boot_mode=BootMode(device.boot_mode) if device.boot_mode else None,
        board=board,
        bootloader=bootloader,
        held_back=held_back or [],
    )


def get_device(session: Session, *, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound(f"no device {device_id}")
    return device


def _locked_by_serial(session: Session, serial: str | None) -> Device | None:
    if serial is None:
        return None
    return session.scalar(select(Device).where(Device.serial == serial).with_for_update())


def _describe(device: Device, request: RegisterRequest) -> None:
    device.hostname = request.hostname
    device.hardware = request.hardware.value
    device.image_version = str(request.image_version)
    device.booted_slot = request.booted_slot
    device.last_seen = utcnow()


def _add_device(session: Session, request: RegisterRequest) -> Device:
    device = Device(
        id=f"dev-{secrets.token_hex(8)}", serial=request.serial, admin_status=AdminStatus.ACTIVE
    )
    _describe(device, request)
    try:
        with session.begin_nested():
            session.add(device)
    except IntegrityError:
        # A first enrolment of the same serial committed meanwhile: this one re-enrols it.
        raced = _locked_by_serial(session, request.serial)
        if raced is None:
            raise
        _reenrol(session, raced, request)
        return raced
    return device


def _reenrol(session: Session, device: Device, request: RegisterRequest) -> None:
    if device.admin_status is AdminStatus.DECOMMISSIONED:
        raise Forbidden(
            f"device {device.id} is decommissioned and cannot re-enrol",
            hint="an admin sets its status to active first (PATCH /devices/{id}/status)",
        )
    auth_service.revoke_device_keys(session, device_id=device.id)
    _describe(device, request)
    session.flush()


def register(
    session: Session, *, request: RegisterRequest, require_signatures: bool = False
) -> RegisterResponse:
    """Enrol a device with an enrollment token; a known serial re-enrols the same device.

    Re-enrolment keeps what an admin decided: a quarantined device stays quarantined, and a
    decommissioned one is refused until an admin sets it active again. The device row is
    locked first, so concurrent re-enrolments of one serial run one after another and leave
    exactly one live credential (each revokes the ones committed before it).
    """
    principal = auth_service.resolve_token(session, token=request.enrollment_token)
    if principal is None or principal.role is not KeyRole.ENROLLMENT:
        raise AuthError("the enrollment token is unknown, revoked or expired")
    fingerprint = _fingerprint(request.public_key)
    if fingerprint is None and require_signatures:
        raise AuthError(
            "enrolment needs the device's public key",
            hint="this Overlord requires signed device requests (require_device_signatures)",
        )
    device = _locked_by_serial(session, request.serial)
    if device is None:
        device = _add_device(session, request)
    else:
        if device.key_fingerprint is not None and device.key_fingerprint != fingerprint:
            # Checked before anything changes: a copied enrolment token and serial do not
            # take over a device whose key is bound; an operator rotates it first.
            raise Forbidden(
                f"device {device.id} is bound to another key and cannot re-enrol with this one",
                hint="an admin rotates its credential first (POST /devices/{id}/rotate-credential)",
            )
        _reenrol(session, device, request)
    device.key_fingerprint = fingerprint
    _key, token = auth_service.create_key(
        session,
        role=KeyRole.DEVICE,
        name=request.hostname,
        device_id=device.id,
        public_key=request.public_key,
    )
    return RegisterResponse(device_id=device.id, device_token=token)


def _fingerprint(public_key: str | None) -> str | None:
    if public_key is None:
        return None
    try:
        return httpsig.fingerprint(httpsig.decode_public_key(public_key))
    except httpsig.SignatureError as err:
        raise AuthError(str(err)) from err


def desired_state(
    session: Session,
    *,
    device_id: str,
    default_poll_interval_s: int,
    sealer: Sealer | None = None,
    remote_join_timeout_s: int = 60,
) -> CachedDesiredState:
    """What the device should run, serialised once with its ETag (two indexed queries).

    The ETag is computed with secret values masked: their sealed forms are in the digest, so
    a changed secret still changes it, and the tag reveals nothing of the value.
    """
    row = session.execute(
        select(
            Device.admin_status,
            Device.desired_os_version,
            Device.desired_roles,
            Device.desired_safe_mode,
            Device.group_name,
            Device.desired_bootloader_version,
            Device.prestage_os_version,
            DeviceGroup.poll_interval_s,
        )
        .outerjoin(DeviceGroup, DeviceGroup.name == Device.group_name)
        .where(Device.id == device_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no device {device_id}")
    admin_status, os_version, roles, safe_mode, group, bootloader, prestage, group_poll = row
    poll = group_poll if group_poll is not None else default_poll_interval_s
    if admin_status is not AdminStatus.ACTIVE:
        state = DesiredState(poll_interval_s=poll)
    else:
        layered = configvars.effective(session, device_id=device_id, group=group)
        state = DesiredState(
            os=DesiredOS(version=Version(os_version), manifest_target=manifest_target(os_version))
            if os_version
            else None,
            bootloader=DesiredBootloader(version=Version(bootloader)) if bootloader else None,
            prestage=_prestage(prestage, os_version),
            roles=[
                DesiredRole(name=name, version=Version(version), target=role_target(name, version))
                for name, version in sorted(roles.items())
            ],
            safe_mode=safe_mode,
            poll_interval_s=poll,
            config=configvars.desired_variables(layered, sealer),
            config_digest=configvars.digest(layered),
        )
    # Named whatever the device's status: a quarantined device is one to look at.
    state.remote = remote.named_session(session, device_id, join_timeout_s=remote_join_timeout_s)
    document = state.model_dump(mode="json")
    for optional in ("remote", "prestage"):
        if document[optional] is None:
            del document[optional]  # devices without one keep the ETag they had
    body = _canonical(document)
    for variable in document["config"].values():
        if variable["secret"]:
            variable["value"] = configvars.MASK
    etag = '"' + hashlib.sha256(_canonical(document)).hexdigest()[:32] + '"'
    return CachedDesiredState(body=body, etag=etag)


def _prestage(version: str | None, desired: str | None) -> DesiredPrestage | None:
    """The release to stage, unless the device is already pointed at it (admitted)."""
    if version is None or version == desired:
        return None
    return DesiredPrestage(
        version=Version(version), manifest_target=manifest_target(version), poll_s=STAGED_POLL_S
    )


def _canonical(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def list_devices(
    session: Session,
    *,
    filters: DeviceFilter,
    limit: int,
    offset: int,
    offline_after_s: int,
) -> tuple[list[DevicePublic], int]:
    now = utcnow()
    clauses: list[ColumnElement[bool]] = []
    if filters.status is not None:
        clauses.append(status_clause(filters.status, now=now, offline_after_s=offline_after_s))
    if filters.image_version is not None:
        clauses.append(Device.image_version == filters.image_version)
    if filters.role is not None:
        clauses.append(Device.role_index.contains(f",{filters.role},", autoescape=True))
    if filters.label is not None:
        clauses.append(Device.label_index.contains(f",{filters.label},", autoescape=True))
    if filters.group is not None:
        clauses.append(Device.group_name == filters.group)
    if filters.board is not None:
        clauses.append(Device.board == filters.board)
    if filters.bootloader_below is not None:
        try:
            below = eeprom.release_timestamp(filters.bootloader_below)
        except eeprom.EepromFormatError as err:
            raise InvalidRequest(f"bootloader_below: {err}") from None
        clauses.append(or_(Device.bootloader_version.is_(None), Device.bootloader_version < below))
    total = session.scalar(select(func.count()).select_from(Device).where(*clauses)) or 0
    rows = session.scalars(
        select(Device)
        .where(*clauses)
        .order_by(Device.hostname, Device.id)
        .limit(limit)
        .offset(offset)
    )
    return [to_public(d, now=now, offline_after_s=offline_after_s) for d in rows], total


def mark_proved(session: Session, *, device_id: str, at: datetime) -> None:
    session.execute(update(Device).where(Device.id == device_id).values(key_proved_at=at))


def rotate_credential(session: Session, *, device_id: str, actor: Actor) -> Device:
    """Revoke a device's credential and unbind its key: it must enrol again (ADR 0075).

    For a device whose key is lost (a corrupt key file, a replaced card) or suspected
    copied. Every replica refuses the old credential within one change poll.
    """
    device = get_device(session, device_id=device_id)
    before = device.key_fingerprint
    auth_service.revoke_device_keys(session, device_id=device_id)
    device.key_fingerprint = None
    audit.record(
        session,
        actor,
        AuditAction.DEVICE_CREDENTIAL_ROTATE,
        object_type=AuditObject.DEVICE,
        object_id=device_id,
        before={"key_fingerprint": before},
        after={"key_fingerprint": None},
    )
    return device


def rekey(session: Session, *, caller: Principal, actor: Actor, public_key: str) -> Device:
    """A device's new key, proved by its old one: the route's device_caller checked that
    this request is signed with the bound key. Audited as the device."""
    assert caller.device_id is not None
    device = get_device(session, device_id=caller.device_id)
    fingerprint = _fingerprint(public_key)
    before = device.key_fingerprint
    auth_service.rebind_public_key(session, key_id=caller.key_id, public_key=public_key)
    device.key_fingerprint = fingerprint
    audit.record(
        session,
        actor,
        AuditAction.DEVICE_REKEY,
        object_type=AuditObject.DEVICE,
        object_id=device.id,
        before={"key_fingerprint": before},
        after={"key_fingerprint": fingerprint},
    )
    return device


def set_admin_status(
    session: Session, *, device_id: str, status: AdminStatus, actor: Actor
) -> Device:
    device = get_device(session, device_id=device_id)
    before = device.admin_status
    device.admin_status = status
    if status is AdminStatus.DECOMMISSIONED:
        auth_service.revoke_device_keys(session, device_id=device_id)
    audit.record(
        session,
        actor,
        AuditAction.DEVICE_STATUS,
        object_type=AuditObject.DEVICE,
        object_id=device_id,
        before={"admin_status": before},
        after={"admin_status": status},
    )
    return device


def update_attributes(
    session: Session, *, device_id: str, update: DeviceAttributesUpdate, actor: Actor
) -> Device:
    """Labels, safe mode and group, each one audit entry when the request sets it."""
    device = get_device(session, device_id=device_id)
    changed: list[tuple[AuditAction, str, object, object]] = []
    if update.labels is not None:
        labels = dict(sorted(update.labels.items()))
        changed.append((AuditAction.DEVICE_LABELS, "labels", device.labels, labels))
        device.labels = labels
        device.label_index = label_index(device.labels)
    if update.safe_mode is not None:
        changed.append(
            (AuditAction.DEVICE_SAFE_MODE, "safe_mode", device.desired_safe_mode, update.safe_mode)
        )
        device.desired_safe_mode = update.safe_mode
    if "group" in update.model_fields_set:
        if update.group is not None and session.get(DeviceGroup, update.group) is None:
            raise NotFound(
                f"no device group {update.group}", hint="create it with PUT /groups/{name}"
            )
        changed.append((AuditAction.DEVICE_GROUP, "group", device.group_name, update.group))
        device.group_name = update.group
    for action, field, old, new in changed:
        audit.record(
            session,
            actor,
            action,
            object_type=AuditObject.DEVICE,
            object_id=device_id,
            before={field: old},
            after={field: new},
        )
    return device


def label_counts(session: Session) -> list[LabelCount]:
    """Every label in use, with how many devices carry it."""
    counts: Counter[tuple[str, str]] = Counter()
    for labels in session.scalars(select(Device.labels)):
        counts.update(labels.items())
    return [LabelCount(key=k, value=v, devices=n) for (k, v), n in sorted(counts.items())]


def scrape_targets(session: Session) -> list[dict[str, object]]:
    """Prometheus HTTP service discovery: one group per active device with a node exporter."""
    rows = session.execute(
        select(Device.id, Device.hardware, Device.group_name, Device.node_exporter)
        .where(Device.node_exporter.is_not(None), Device.admin_status == AdminStatus.ACTIVE)
        .order_by(Device.id)
    )
    return [
        {
            "targets": [address],
            "labels": {
                "__meta_fleet_device_id": device_id,
                "__meta_fleet_hardware": hardware,
                "__meta_fleet_group": group or "",
            },
        }
        for device_id, hardware, group, address in rows
    ]


def prune_heartbeats(session: Session, *, retention_days: int) -> int:
    """Delete heartbeat history past the retention period; returns rows removed."""
    cutoff = utcnow() - timedelta(days=retention_days)
    result = session.execute(delete(DeviceHeartbeat).where(DeviceHeartbeat.received_at < cutoff))
    return int(result.rowcount)  # type: ignore[attr-defined]


def heartbeat_history(session: Session, *, device_id: str, limit: int) -> list[DeviceHeartbeat]:
    return list(
        session.scalars(
            select(DeviceHeartbeat)
            .where(DeviceHeartbeat.device_id == device_id)
            .order_by(DeviceHeartbeat.received_at.desc())
            .limit(limit)
        )
    )


def last_board(session: Session, *, device_id: str) -> BoardReport | None:
    """The board the device's newest stored heartbeat reports (kept in the history row's JSON
    payload, so no column holds it); None before one has, or when it is unreadable."""
    return _last_reported(session, device_id, "board", BoardReport)


def last_bootloader(session: Session, *, device_id: str) -> BootloaderReport | None:
    """The EEPROM bootloader the device's newest stored heartbeat reports, like the board."""
    return _last_reported(session, device_id, "bootloader", BootloaderReport)


def _last_reported(session: Session, device_id: str, key: str, model: type[_R]) -> _R | None:
    payload = session.scalar(
        select(DeviceHeartbeat.payload)
        .where(DeviceHeartbeat.device_id == device_id)
        .order_by(DeviceHeartbeat.received_at.desc(), DeviceHeartbeat.id.desc())
        .limit(1)
    )
    raw = payload.get(key) if isinstance(payload, dict) else None
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def known_label(key: str, value: str) -> ColumnElement[bool]:
    return Device.label_index.contains(f",{key}={value},", autoescape=True)
