"""Cross-replica invalidation of cached desired states.

A session hook records a :class:`DesiredStateChange` whenever a column that a desired state is
built from changes, in the same transaction (and, on PostgreSQL, announces it to every
replica's listener at commit: ``overlord.invalidation``). Each replica reads the log every
``change_poll_s`` and drops the cached answers it names, so a replica may keep answering
unchanged devices from memory indefinitely (the cheap 304) while a change reaches it within
``change_poll_s``. Reads overlap by ``OVERLAP`` so that a transaction committing late, or a
modest clock difference between replicas, is not missed.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, event, inspect, select
from sqlalchemy.orm import Session

from overlord import invalidation
from overlord.cache import TTLCache
from overlord.db import unit_of_work, utcnow
from overlord.devices.models import DesiredStateChange, Device
from overlord.devices.schemas import CachedDesiredState
from overlord.rollouts.models import DeviceGroup

OVERLAP = timedelta(seconds=10)
RETENTION = timedelta(hours=1)
_DEVICE_COLUMNS = (
    "desired_os_version",
    "desired_bootloader_version",
    "prestage_os_version",
    "desired_roles",
    "desired_safe_mode",
    "admin_status",
    "group_name",
)
_GROUP_COLUMNS = ("poll_interval_s",)
# Past this many devices changed in one flush, one "every device" notification is cheaper.
_MAX_NOTIFIES = 50


def _changed(obj: object, columns: tuple[str, ...]) -> bool:
    state = inspect(obj)
    return any(state.attrs[c].history.has_changes() for c in columns)


@event.listens_for(Session, "before_flush")
def _record_changes(session: Session, _context: Any, _instances: Any) -> None:
    changes = []
    for obj in session.dirty:
        if isinstance(obj, Device) and _changed(obj, _DEVICE_COLUMNS):
            changes.append(DesiredStateChange(device_id=obj.id))
        elif isinstance(obj, DeviceGroup) and _changed(obj, _GROUP_COLUMNS):
            changes.append(DesiredStateChange(device_id=None))
    if any(isinstance(obj, DeviceGroup) for obj in session.deleted):
        changes.append(DesiredStateChange(device_id=None))
    session.add_all(changes)
    messages = {
        invalidation.device(c.device_id) if c.device_id else invalidation.ALL_DEVICES
        for c in changes
    }
    if len(messages) > _MAX_NOTIFIES:  # e.g. a rollout stage admitting many devices at once
        messages = {invalidation.ALL_DEVICES}
    for message in messages:
        invalidation.announce(session, message)


def touch(session: Session, device_ids: Collection[str] | None) -> None:
    """Record that these devices' desired states change in this transaction (None: possibly
    every device), for what the hook cannot see (configuration variables)."""
    if device_ids is None or len(device_ids) > _MAX_NOTIFIES:
        session.add(DesiredStateChange(device_id=None))
        invalidation.announce(session, invalidation.ALL_DEVICES)
        return
    for device_id in sorted(set(device_ids)):
        session.add(DesiredStateChange(device_id=device_id))
        invalidation.announce(session, invalidation.device(device_id))


class ChangeFollower:
    """Keeps one replica's desired-state cache in step with the change log.

    Called by the replica's ``invalidation.CacheKeeper`` thread every ``change_poll_s``.
    """

    def __init__(self, cache: TTLCache[str, CachedDesiredState]) -> None:
        self._cache = cache
        self._since: datetime | None = None
        self._lock = threading.Lock()

    def follow(self, sessions: Any) -> None:
        """Read changes since the last look (minus the overlap) and drop what they name."""
        with self._lock:
            self._follow(sessions)

    def _follow(self, sessions: Any) -> None:
        started = utcnow()
        if self._since is None:
            # Nothing is cached before the first look, so only later changes matter.
            self._since = started
        with unit_of_work(sessions) as session:
            devices = set(
                session.scalars(
                    select(DesiredStateChange.device_id).where(
                        DesiredStateChange.changed_at > self._since - OVERLAP
                    )
                )
            )
        if None in devices:
            self._cache.clear()
        for device_id in devices - {None}:
            assert device_id is not None
            self._cache.drop(device_id)
        self._since = started


def prune(session: Session) -> None:
    session.execute(
        delete(DesiredStateChange).where(DesiredStateChange.changed_at < utcnow() - RETENTION)
    )
