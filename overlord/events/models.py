"""Device events (deduplicated by the device's sequence number) and operator alerts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fleetcore.wire import EventKind
from overlord.db import BIG_ID, Base, str_enum, utcnow


class DeviceEvent(Base):
    __tablename__ = "device_events"
    __table_args__ = (UniqueConstraint("device_id", "seq", name="uq_device_events_device_seq"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[EventKind] = mapped_column(str_enum(EventKind))
    version: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AlertKind(StrEnum):
    ROLLOUT_HALTED = "rollout-halted"
    DEVICE_ROLLED_BACK = "device-rolled-back"
    SAFE_MODE = "safe-mode"


class AlertRule(Base):
    """Whether the Overlord raises alerts of a kind; Prometheus rules live in the ops stack."""

    __tablename__ = "alert_rules"

    kind: Mapped[AlertKind] = mapped_column(str_enum(AlertKind), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=True)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    kind: Mapped[AlertKind] = mapped_column(str_enum(AlertKind))
    subject: Mapped[str] = mapped_column(String(200), index=True)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    resolved_at: Mapped[datetime | None]
