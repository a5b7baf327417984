"""Which devices a rollout's selector matches, and the checks made when one is created."""

from __future__ import annotations

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from overlord.devices.models import AdminStatus, Device
from overlord.devices.service import known_label
from overlord.errors import InvalidRequest, NotFound
from overlord.rollouts.models import DeviceGroup
from overlord.rollouts.schemas import Selector


def matching(selector: Selector) -> Select[Device]:
    """Active devices the selector targets and does not exclude."""
    query = select(Device).where(Device.admin_status == AdminStatus.ACTIVE)
    if selector.groups:
        query = query.where(Device.group_name.in_(selector.groups))
    for key, value in selector.labels.items():
        query = query.where(known_label(key, value))
    if selector.hardware:
        query = query.where(Device.hardware.in_([h.value for h in selector.hardware]))
    if selector.boards:
        query = query.where(Device.board.in_([b.value for b in selector.boards]))
    exclude = selector.exclude
    if exclude.groups:
        query = query.where(
            or_(Device.group_name.is_(None), Device.group_name.not_in(exclude.groups))
        )
    for key, value in exclude.labels.items():
        query = query.where(~known_label(key, value))
    if exclude.hardware:
        query = query.where(Device.hardware.not_in([h.value for h in exclude.hardware]))
    if exclude.boards:
        query = query.where(
            or_(Device.board.is_(None), Device.board.not_in([b.value for b in exclude.boards]))
        )
    if exclude.devices:
        query = query.where(Device.id.not_in(exclude.devices))
    return query


def check(session: Session, selector: Selector) -> int:
    """The number of devices a new rollout's selector matches; refuses unknown groups and
    devices, and a selector that matches none, naming the field."""
    for field, groups in (
        ("selector.groups", selector.groups),
        ("selector.exclude.groups", selector.exclude.groups),
    ):
        known = set(session.scalars(select(DeviceGroup.name).where(DeviceGroup.name.in_(groups))))
        if missing := sorted(set(groups) - known):
            raise NotFound(f"{field}: no device group {', '.join(missing)}")
    listed = selector.exclude.devices
    known_ids = set(session.scalars(select(Device.id).where(Device.id.in_(listed))))
    if missing := sorted(set(listed) - known_ids):
        raise InvalidRequest(
            f"selector.exclude.devices: no device {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    count = session.scalar(select(func.count()).select_from(matching(selector).subquery()))
    if not count:
        raise InvalidRequest(
            f"selector matches no active device: {describe(selector)}",
            hint="list the devices with 'fleetctl devices list' and widen the targeting",
        )
    return count


def describe(selector: Selector) -> str:
    """The selector in one line, as operators write it."""
    parts = [
        f"groups {','.join(selector.groups)}" if selector.groups else "all groups",
        *(f"label {k}={v}" for k, v in selector.labels.items()),
    ]
    if selector.hardware:
        parts.append(f"hardware {','.join(selector.hardware)}")
    if selector.boards:
        parts.append(f"boards {','.join(selector.boards)}")
    exclude = selector.exclude
    excluded = [
        *(f"group {g}" for g in exclude.groups),
        *(f"label {k}={v}" for k, v in exclude.labels.items()),
        *(f"hardware {h}" for h in exclude.hardware),
        *(f"board {b}" for b in exclude.boards),
        *(f"device {d}" for d in exclude.devices[:5]),
    ]
    if len(exclude.devices) > 5:
        excluded.append(f"{len(exclude.devices) - 5} more devices")
    if excluded:
        parts.append("excluding " + ", ".join(excluded))
    return "; ".join(parts)
