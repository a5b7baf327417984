"""Queries behind the dashboard pages."""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetcore.errors import VersionError
from fleetcore.version import Version
from fleetcore.wire import EventKind
from overlord.configvars import service as configvars
from overlord.dashboard.models import DevicePage, FleetSummary, RoleRow, VersionRow
from overlord.db import utcnow
from overlord.devices import service as devices_service
from overlord.devices.models import Device
from overlord.devices.schemas import FleetStatus
from overlord.events import service as events_service
from overlord.events.schemas import DeviceEventPublic
from overlord.rollouts import service as rollouts_service
from overlord.rollouts.models import DeploymentRollout, DeviceUpdate
from overlord.rollouts.schemas import DeviceUpdatePublic

ROLLBACK_KINDS = frozenset(
    {
        EventKind.ROLLBACK,
        EventKind.INSTALL_FAILED,
        EventKind.VERSION_MARKED_BAD,
        EventKind.ROLE_FAILED,
        EventKind.ROLE_ROLLBACK,
        EventKind.SAFE_MODE_ENTERED,
    }
)


def _version_key(text: str) -> tuple[int, Version | None, str]:
    try:
        return (0, Version(text), text)
    except VersionError:
        return (1, None, text)


def fleet_summary(session: Session, *, offline_after_s: int) -> FleetSummary:
    now = utcnow()
    images: dict[str, Counter[str]] = defaultdict(Counter)
    roles: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    statuses: Counter[str] = Counter()
    for device in session.scalars(select(Device)):
        status = devices_service.fleet_status(
            last_seen=device.last_seen,
            safe_mode=device.safe_mode,
            update_state=device.update_state,
            now=now,
            offline_after_s=offline_after_s,
        ).value
        statuses[status] += 1
        images[device.image_version][status] += 1
        for role in device.roles:
            roles[(str(role.get("name")), str(role.get("version")))][str(role.get("health"))] += 1
    image_rows = [
        VersionRow(version=v, total=sum(c.values()), by_status=dict(c))
        for v, c in sorted(images.items(), key=lambda item: _version_key(item[0]), reverse=True)
    ]
    role_rows = [
        RoleRow(role=name, version=version, total=sum(c.values()), by_health=dict(c))
        for (name, version), c in sorted(roles.items())
    ]
    return FleetSummary(
        total=sum(statuses.values()),
        by_status={s.value: statuses.get(s.value, 0) for s in FleetStatus},
        images=image_rows,
        roles=role_rows,
    )


def device_page(session: Session, *, device_id: str, offline_after_s: int) -> DevicePage:
    device = devices_service.get_device(session, device_id=device_id)
    rows, _total = events_service.list_events(session, device_id=device_id, limit=200, offset=0)
    events = [DeviceEventPublic.model_validate(r) for r in rows]
    updates = [
        (name, DeviceUpdatePublic.model_validate(row))
        for row, name in session.execute(
            select(DeviceUpdate, DeploymentRollout.name)
            .join(DeploymentRollout, DeploymentRollout.id == DeviceUpdate.rollout_id)
            .where(DeviceUpdate.device_id == device_id)
            .order_by(DeviceUpdate.admitted_at.desc())
        )
    ]
    return DevicePage(
        device=devices_service.to_public(
            device,
            now=utcnow(),
            offline_after_s=offline_after_s,
            board=devices_service.last_board(session, device_id=device_id),
            bootloader=devices_service.last_bootloader(session, device_id=device_id),
            held_back=rollouts_service.holds(session, device=device),
        ),
        events=events,
        rollbacks=[e for e in events if e.kind in ROLLBACK_KINDS],
        updates=updates,
        config=configvars.effective_config(session, device),
    )
