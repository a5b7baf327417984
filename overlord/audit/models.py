"""The audit log: one append-only row per operator action (ADR 0067).

Actions, roles and object types are stored as plain strings, not as enum columns: an entry
must stay readable whatever later versions rename or retire, and a new action needs no
migration. The enums below are what this version writes and what the API filters accept.
Nothing refers to a key or an object by foreign key either: a key or a device may be gone,
its entries stay as they were written.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from overlord.db import BIG_ID, Base, utcnow

TABLE = "audit_log"
NAME_CHARS = 200
OBJECT_ID_CHARS = 200
SOURCE_CHARS = 64
REQUEST_ID_CHARS = 64


class AuditAction(StrEnum):
    """What an operator did, as ``<object>.<verb>``."""

    LOGIN = "dashboard.login"
    LOGIN_FAILED = "dashboard.login_failed"
    LOGOUT = "dashboard.logout"
    TOKEN_CREATE = "token.create"  # noqa: S105 - an action, not a secret
    TOKEN_REVOKE = "token.revoke"  # noqa: S105 - an action, not a secret
    DEVICE_STATUS = "device.status"
    DEVICE_LABELS = "device.labels"
    DEVICE_GROUP = "device.group"
    DEVICE_SAFE_MODE = "device.safe_mode"
    DEVICE_CREDENTIAL_ROTATE = "device.credential_rotate"
    DEVICE_REKEY = "device.rekey"
    GROUP_CREATE = "group.create"
    GROUP_UPDATE = "group.update"
    GROUP_DELETE = "group.delete"
    RELEASE_PUBLISH = "release.publish"
    RELEASE_GC = "release.gc"
    ROLLOUT_CREATE = "rollout.create"
    ROLLOUT_PAUSE = "rollout.pause"
    ROLLOUT_RESUME = "rollout.resume"
    ROLLOUT_ABORT = "rollout.abort"
    # Made by the scheduler as the rollout's schedule said (ADR 0069):
    ROLLOUT_START = "rollout.start"
    ROLLOUT_DEADLINE = "rollout.deadline"
    ALERT_RULE_SET = "alert_rule.set"
    ALERT_RESOLVE = "alert.resolve"
    CONFIG_SET = "config.set"
    CONFIG_UNSET = "config.unset"
    REMOTE_OPEN = "remote.open"
    REMOTE_END = "remote.end"
    REMOTE_RECORDING = "remote.recording"  # an admin read a shell's recording
    REMOTE_STREAM = "remote.stream"  # a forward's stream opened, closed or failed


class AuditObject(StrEnum):
    """The kind of thing an action changed; with its id it names the object (``rollout/12``)."""

    TOKEN = "token"  # noqa: S105 - a kind of object, not a secret
    DEVICE = "device"
    GROUP = "group"
    REPOSITORY = "repository"
    ROLLOUT = "rollout"
    ALERT_RULE = "alert_rule"
    ALERT = "alert"
    CONFIG = "config"  # id: fleet, group/<name> or device/<id>


class Channel(StrEnum):
    """Where the action came in: the JSON API, the dashboard, the server's own CLI, or the
    scheduler carrying out what an operator scheduled."""

    API = "api"
    DASHBOARD = "dashboard"
    SCHEDULER = "scheduler"
    CLI = "cli"


class AuditEntry(Base):
    __tablename__ = TABLE
    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_key_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor_name: Mapped[str] = mapped_column(String(NAME_CHARS), default="")
    actor_role: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(SOURCE_CHARS))
    via: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(OBJECT_ID_CHARS))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_CHARS))
