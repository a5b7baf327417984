"""Setting, unsetting and merging configuration variables (ADR 0068).

A device's configuration is the fleet's variables, overridden by its group's, overridden by
its own. Secret values are sealed at rest (:mod:`overlord.configvars.sealing`) and leave the
Overlord only in the desired state of a device they apply to: listings, the audit log and
every log line show ``***``. Each change is one audit entry per verb in the change's own
transaction, and records a desired-state change for the devices it reaches, so every replica
drops their cached answers (``devices.changes``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, select, text
from sqlalchemy.orm import Session

from fleetcore.wire import DesiredVariable
from overlord.audit import service as audit
from overlord.audit.models import AuditAction, AuditObject
from overlord.audit.service import Actor
from overlord.configvars import sealing
from overlord.configvars.models import ConfigScope, ConfigVariable
from overlord.configvars.schemas import (
    MAX_KEYS,
    EffectiveConfig,
    EffectiveVariable,
    VariablePublic,
)
from overlord.db import utcnow
from overlord.devices import changes
from overlord.devices.models import Device
from overlord.errors import InvalidRequest, NoConfigKey, NotFound, SecretsUnavailable
from overlord.rollouts.models import DeviceGroup

MASK = audit.MASK
MAX_SCOPE_BYTES = 64 * 1024
"""Keys and values of one scope together, in UTF-8: a device's merged configuration (three
scopes, JSON-escaped) stays far below the 1 MiB a device reads of a desired state."""
# Past this many devices in a group, one "every device" change is cheaper than one each.
_MAX_NAMED_DEVICES = 50
_RANK = {ConfigScope.FLEET: 0, ConfigScope.GROUP: 1, ConfigScope.DEVICE: 2}


@dataclass(frozen=True)
class Scope:
    """The fleet, one group or one device."""

    kind: ConfigScope
    target: str = ""

    @property
    def name(self) -> str:
        """``fleet``, ``group/<name>`` or ``device/<id>``: the audit object and the source."""
        return self.kind.value if self.kind is ConfigScope.FLEET else f"{self.kind}/{self.target}"

    def binding(self, key: str) -> str:
        """What a sealed value of ``key`` here is bound to (its authenticated data)."""
        return f"{self.name}/{key}"

    @classmethod
    def of(cls, row: ConfigVariable) -> Scope:
        return cls(row.scope, row.target)


FLEET = Scope(ConfigScope.FLEET)


@dataclass(frozen=True)
class NewValue:
    value: str
    secret: bool = False


@dataclass(frozen=True)
class Layered:
    """A device's value of one key: the row that wins, and the levels it overrides."""

    row: ConfigVariable
    source: Scope
    overrides: tuple[Scope, ...]


def require_scope(session: Session, scope: Scope) -> None:
    if scope.kind is ConfigScope.GROUP and session.get(DeviceGroup, scope.target) is None:
        raise NotFound(f"no device group {scope.target}", hint="create it with PUT /groups/{name}")
    if scope.kind is ConfigScope.DEVICE and session.get(Device, scope.target) is None:
        raise NotFound(f"no device {scope.target}")


def _rows(session: Session, scope: Scope) -> list[ConfigVariable]:
    return list(
        session.scalars(
            select(ConfigVariable)
            .where(ConfigVariable.scope == scope.kind, ConfigVariable.target == scope.target)
            .order_by(ConfigVariable.key)
        )
    )


def variables(session: Session, scope: Scope) -> list[ConfigVariable]:
    """The scope's variables in key order (404 for a group or device that does not exist)."""
    require_scope(session, scope)
    return _rows(session, scope)


def shown(row: ConfigVariable) -> str:
    """The value as listings, the dashboard and the audit log show it."""
    return MASK if row.sealed is not None or row.value is None else row.value


def change(
    session: Session,
    scope: Scope,
    *,
    assign: Mapping[str, NewValue],
    unset: Collection[str] = (),
    sealer: sealing.Sealer | None,
    actor: Actor,
) -> list[ConfigVariable]:
    """Set ``assign`` and remove ``unset`` in ``scope``, all or nothing; the scope's rows after.

    Refused before anything is written: a secret without a configured key (409), a key to
    unset that is not set (404), a scope that would exceed :data:`MAX_KEYS` variables or
    :data:`MAX_SCOPE_BYTES` (422).
    """
    require_scope(session, scope)
    if sealer is None and any(new.secret for new in assign.values()):
        raise NoConfigKey(
            "secret values need OVERLORD_CONFIG_KEY, which this Overlord does not have",
            hint="make one with `overlord config-key`, set it on every replica and restart; "
            "or set the value without --secret",
        )
    if both := sorted(set(assign) & set(unset)):
        raise InvalidRequest(f"set and unset both name {', '.join(both)}")
    _lock(session, scope)
    rows = {row.key: row for row in _rows(session, scope)}
    if missing := sorted(set(unset) - set(rows)):
        raise NotFound(f"{scope.name}: {', '.join(missing)} not set")
    _check_bounds(scope, rows, assign, unset)
    replaced = [rows[key] for key in assign if key in rows]
    before_set = _shown_rows(replaced) if replaced else None
    removed = _shown_rows(rows[key] for key in unset) if unset else None
    now = utcnow()
    for key, new in sorted(assign.items()):
        row = rows.get(key)
        if row is None:
            row = ConfigVariable(scope=scope.kind, target=scope.target, key=key)
            session.add(row)
            rows[key] = row
        if new.secret:
            assert sealer is not None
            row.value, row.sealed = None, sealer.seal(new.value, binding=scope.binding(key))
        else:
            row.value, row.sealed = new.value, None
        row.updated_at = now
    for key in unset:
        session.delete(rows.pop(key))
    session.flush()
    entries: list[tuple[AuditAction, dict[str, object] | None, dict[str, object] | None]] = []
    if assign:
        entries.append((AuditAction.CONFIG_SET, before_set, _shown_rows(rows[k] for k in assign)))
    if unset:
        entries.append((AuditAction.CONFIG_UNSET, removed, None))
    for action, before, after in entries:
        audit.record(
            session,
            actor,
            action,
            object_type=AuditObject.CONFIG,
            object_id=scope.name,
            before=before,
            after=after,
        )
    changes.touch(session, affected_devices(session, scope))
    return sorted(rows.values(), key=lambda row: row.key)


def _shown_rows(rows: Iterable[ConfigVariable]) -> dict[str, object]:
    """``{"values": {key: value or ***}, "masked": [secret keys]}``: an audit entry's side."""
    listed = sorted(rows, key=lambda row: row.key)
    return {
        "values": {row.key: shown(row) for row in listed},
        "masked": [row.key for row in listed if row.sealed is not None],
    }


def _lock(session: Session, scope: Scope) -> None:
    """Serialise changes of one scope on PostgreSQL, so concurrent ones cannot both pass the
    bounds (SQLite has one writer at a time anyway)."""
    if session.connection().dialect.name == "postgresql":
        digest = hashlib.sha256(f"config_variables:{scope.name}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _size(key: str, row: ConfigVariable) -> int:
    if row.sealed is not None:
        return len(key) + sealing.plaintext_bytes(row.sealed)
    return len(key) + len((row.value or "").encode("utf-8"))


def _check_bounds(
    scope: Scope,
    rows: Mapping[str, ConfigVariable],
    assign: Mapping[str, NewValue],
    unset: Collection[str],
) -> None:
    kept = {key: row for key, row in rows.items() if key not in assign and key not in unset}
    count = len(kept) + len(assign)
    if count > MAX_KEYS:
        raise InvalidRequest(
            f"{scope.name} would hold {count} variables; at most {MAX_KEYS} per scope",
            hint="unset variables it no longer needs",
        )
    size = sum(_size(key, row) for key, row in kept.items()) + sum(
        len(key) + len(new.value.encode("utf-8")) for key, new in assign.items()
    )
    if size > MAX_SCOPE_BYTES:
        raise InvalidRequest(
            f"{scope.name} would hold {size} bytes of keys and values; "
            f"at most {MAX_SCOPE_BYTES} per scope",
            hint="unset variables it no longer needs, or set them at another level",
        )


def affected_devices(session: Session, scope: Scope) -> list[str] | None:
    """The devices whose configuration ``scope`` is part of; None: possibly every device."""
    if scope.kind is ConfigScope.DEVICE:
        return [scope.target]
    if scope.kind is ConfigScope.GROUP:
        ids = list(
            session.scalars(
                select(Device.id)
                .where(Device.group_name == scope.target)
                .limit(_MAX_NAMED_DEVICES + 1)
            )
        )
        return ids if len(ids) <= _MAX_NAMED_DEVICES else None
    return None


def delete_group_variables(session: Session, group: str) -> list[str]:
    """Drop a deleted group's variables; their keys (for the group's audit entry)."""
    rows = _rows(session, Scope(ConfigScope.GROUP, group))
    for row in rows:
        session.delete(row)
    return [row.key for row in rows]


def _levels(device_id: str, group: str | None) -> ColumnElement[bool]:
    levels = [
        ConfigVariable.scope == ConfigScope.FLEET,
        and_(ConfigVariable.scope == ConfigScope.DEVICE, ConfigVariable.target == device_id),
    ]
    if group is not None:
        levels.append(
            and_(ConfigVariable.scope == ConfigScope.GROUP, ConfigVariable.target == group)
        )
    return or_(*levels)


def effective(session: Session, *, device_id: str, group: str | None) -> list[Layered]:
    """The device's configuration in key order: each key's most specific row (one query)."""
    by_key: dict[str, list[ConfigVariable]] = {}
    for row in session.scalars(select(ConfigVariable).where(_levels(device_id, group))):
        by_key.setdefault(row.key, []).append(row)
    layered = []
    for key in sorted(by_key):
        ranked = sorted(by_key[key], key=lambda row: _RANK[row.scope])
        winner = ranked[-1]
        overrides = tuple(Scope.of(row) for row in reversed(ranked[:-1]))
        layered.append(Layered(row=winner, source=Scope.of(winner), overrides=overrides))
    return layered


def public(row: ConfigVariable) -> VariablePublic:
    """A variable as listings show it (a secret value as ``***``)."""
    return VariablePublic(
        key=row.key, value=shown(row), secret=row.secret, updated_at=row.updated_at
    )


def effective_config(session: Session, device: Device) -> EffectiveConfig:
    """What ``device`` gets, secrets as ``***``: each key's value, where it is set, what it
    overrides; the digest it should apply and the one it reported."""
    layered = effective(session, device_id=device.id, group=device.group_name)
    return EffectiveConfig(
        device_id=device.id,
        group=device.group_name,
        variables=[
            EffectiveVariable(
                **public(item.row).model_dump(),
                source=item.source.name,
                overrides=[scope.name for scope in item.overrides],
            )
            for item in layered
        ],
        digest=digest(layered),
        applied_digest=device.config_digest,
    )


def digest(layered: Collection[Layered]) -> str:
    """What identifies the configuration a device applies, without revealing a secret: a
    secret value counts by its sealed form (a fresh nonce each time it is set)."""
    items = [
        [item.row.key, "sealed", item.row.sealed]
        if item.row.sealed is not None
        else [item.row.key, "plain", item.row.value]
        for item in layered
    ]
    canonical = json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def desired_variables(
    layered: Collection[Layered], sealer: sealing.Sealer | None
) -> dict[str, DesiredVariable]:
    """The values a device gets, secrets opened: the one place they leave the Overlord.

    A secret this Overlord cannot open (no key, another key, a value moved between rows)
    makes the whole answer a 503, and the device keeps running what it has: a partial
    configuration would restart roles without a value they need.
    """
    config = {}
    for item in layered:
        row = item.row
        if row.sealed is None:
            config[row.key] = DesiredVariable(value=row.value or "", secret=False)
            continue
        if sealer is None:
            raise SecretsUnavailable(
                f"{item.source.binding(row.key)}: a secret value, and OVERLORD_CONFIG_KEY is "
                "not set",
                hint="set the key it was sealed under on every replica",
            )
        binding = item.source.binding(row.key)
        try:
            value = sealer.open(row.sealed, binding=binding)
        except sealing.SecretUnreadable as err:
            raise SecretsUnavailable(
                f"{binding}: {err}", hint="set the key it was sealed under on every replica"
            ) from err
        config[row.key] = DesiredVariable(value=value, secret=True)
    return config
