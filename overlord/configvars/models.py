"""Configuration variables: key/value pairs at the fleet, group or device level (ADR 0068).

One row per (scope, target, key): ``target`` is empty for the fleet, the group's name or the
device's id. A plain value is in ``value``; a secret one only in ``sealed``
(:mod:`overlord.configvars.sealing`), never both. No foreign keys: a group's variables are
deleted with the group (``rollouts.service.delete_group``), and devices are never deleted.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from overlord.db import BIG_ID, Base, str_enum, utcnow

TABLE = "config_variables"
TARGET_CHARS = 64
KEY_CHARS = 64


class ConfigScope(StrEnum):
    """Where a variable is set; a device takes the most specific (device, group, fleet)."""

    FLEET = "fleet"
    GROUP = "group"
    DEVICE = "device"


class ConfigVariable(Base):
    __tablename__ = TABLE
    __table_args__ = (
        UniqueConstraint("scope", "target", "key", name="uq_config_variables_scope_target_key"),
        CheckConstraint("(value IS NULL) <> (sealed IS NULL)", name="plain_or_sealed"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    scope: Mapped[ConfigScope] = mapped_column(str_enum(ConfigScope))
    target: Mapped[str] = mapped_column(String(TARGET_CHARS), default="")
    key: Mapped[str] = mapped_column(String(KEY_CHARS))
    value: Mapped[str | None] = mapped_column(Text)
    sealed: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def secret(self) -> bool:
        return self.sealed is not None
