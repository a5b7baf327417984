"""The role manager's state as data: per role records, and safe mode as one cause.

Pure (no file access), so :mod:`updater.roles.decide` works on it; :mod:`updater.roles.state`
loads and saves it. Safe mode is one :class:`SafeModeCause` in memory and the three booleans
every release has written (``active``, ``manual``, ``by_overlord``) in its serialised form:
release 0.1.0's reader refuses unknown fields, so the cause is converted both ways and the file
reads the same in a release before this one, after an A/B fallback.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from fleetcore.version import Version


class _Model(BaseModel):
    # A newer minor format adds fields this reader ignores.
    model_config = ConfigDict(extra="ignore")


MAX_BAD_VERSIONS = 20


class RoleRecord(_Model):
    failures: int = Field(default=0, ge=0, description="consecutive failures to run the role")
    bad_versions: list[Version] = Field(default_factory=list)
    pending: Version | None = Field(default=None, description="version being switched to")
    floor: Version | None = Field(
        default=None, description="highest version floor signed metadata declared for the role"
    )
    confirmed: Version | None = Field(
        default=None, description="highest version that passed the health gate here"
    )
    rolling_back: Version | None = Field(
        default=None,
        description="failed version a rollback replaced, until the rollback has been reported",
    )
    last_error: str | None = None
    last_error_at: datetime | None = None

    def confirm(self, version: Version) -> None:
        """``version`` passed the health gate: nothing below it may start again."""
        if self.confirmed is None or version > self.confirmed:
            self.confirmed = version

    def mark_bad(self, version: Version) -> None:
        """Never retry ``version``; only the most recent bad versions are remembered."""
        if version not in self.bad_versions:
            self.bad_versions = [*self.bad_versions, version][-MAX_BAD_VERSIONS:]


class SafeModeCause(StrEnum):
    """Why safe mode is on: one cause at a time, ``NONE`` when it is off."""

    NONE = "none"
    CRASH_LOOP = "crash-loop"  # ``role`` failed ``safe_mode_after`` times in a row
    OPERATOR = "operator"  # ``fleet-updater roles safe-mode enter``
    OVERLORD = "overlord"  # ``DesiredState.safe_mode``


class _SafeModeOnDisk(_Model):
    """Safe mode as every release so far writes it: three booleans and the details.

    Release 0.1.0's reader forbids unknown fields, so the cause is stored in this shape only.
    """

    active: bool = False
    manual: bool = False
    by_overlord: bool = Field(default=False, description="requested through the desired state")
    reason: str | None = None
    role: str | None = Field(default=None, description="the role whose failures tripped it")
    version: Version | None = None
    since: datetime | None = None


# cause -> (active, manual, by_overlord), as the booleans have always meant it.
_FLAGS = {
    SafeModeCause.NONE: (False, False, False),
    SafeModeCause.CRASH_LOOP: (True, False, False),
    SafeModeCause.OPERATOR: (True, True, False),
    SafeModeCause.OVERLORD: (True, True, True),
}


def _cause_of(disk: _SafeModeOnDisk) -> SafeModeCause:
    if not disk.active:
        return SafeModeCause.NONE
    if disk.manual:
        return SafeModeCause.OVERLORD if disk.by_overlord else SafeModeCause.OPERATOR
    # Active, not manual, no role: no release writes it; a safe mode of unknown origin is
    # left to a person, as an operator's is.
    return SafeModeCause.CRASH_LOOP if disk.role else SafeModeCause.OPERATOR


class SafeModeRecord(_Model):
    """Safe mode: its cause, and for a crash loop the role and version that tripped it."""

    cause: SafeModeCause = SafeModeCause.NONE
    reason: str | None = None
    role: str | None = Field(default=None, description="the role whose failures tripped it")
    version: Version | None = None
    since: datetime | None = None

    @property
    def active(self) -> bool:
        return self.cause is not SafeModeCause.NONE

    @property
    def manual(self) -> bool:
        """Asked for (operator or Overlord): every role is stopped and no apply runs."""
        return self.cause in (SafeModeCause.OPERATOR, SafeModeCause.OVERLORD)

    def tripped_by(self, name: str) -> bool:
        """``name``'s failures put the device in safe mode: it stays stopped until fixed."""
        return self.cause is SafeModeCause.CRASH_LOOP and self.role == name

    @model_validator(mode="before")
    @classmethod
    def _from_disk(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "cause" in data:
            return data
        disk = _SafeModeOnDisk.model_validate(data)
        cause = _cause_of(disk)
        if cause is SafeModeCause.NONE:
            return {}
        crash = cause is SafeModeCause.CRASH_LOOP
        return {
            "cause": cause,
            "reason": disk.reason,
            "role": disk.role if crash else None,
            "version": disk.version if crash else None,
            "since": disk.since,
        }

    @model_serializer(mode="wrap")
    def _to_disk(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        fields = handler(self)
        active, manual, by_overlord = _FLAGS[self.cause]
        del fields["cause"]
        return {"active": active, "manual": manual, "by_overlord": by_overlord, **fields}


class ManagerState(_Model):
    roles: dict[str, RoleRecord] = Field(default_factory=dict)
    safe_mode: SafeModeRecord = Field(default_factory=SafeModeRecord)

    def role(self, name: str) -> RoleRecord:
        return self.roles.setdefault(name, RoleRecord())
