"""Operator-facing event and alert schemas (devices send fleetcore.wire.EventBatch)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from fleetcore.wire import EventKind
from overlord.events.models import AlertKind


class DeviceEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    time: datetime
    received_at: datetime
    kind: EventKind
    version: str | None
    message: str
    reason: str | None
    data: dict[str, Any]


class DeviceEventPage(BaseModel):
    items: list[DeviceEventPublic]
    total: int
    limit: int
    offset: int


class AlertPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: AlertKind
    subject: str
    message: str
    created_at: datetime
    resolved_at: datetime | None


class AlertRuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class AlertRulePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: AlertKind
    enabled: bool
