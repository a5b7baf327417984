"""Operator-facing device schemas (the device's own wire models live in fleetcore.wire)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from fleetcore.bounded import Name
from fleetcore.layout import Slot
from fleetcore.version import Version
from fleetcore.wire import BoardReport, BootloaderReport, BootMode, Health, UpdateState
from overlord.devices.models import LABEL_INDEX_CHARS, AdminStatus

LabelPart = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
GroupName = Name
# Ids the Overlord hands out are "dev-" and 16 hex digits; anything else is simply unknown,
# but it must still fit the column and be a valid query parameter (no NUL).
DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,32}$")]
MAX_LABELS = 32


def label_index(labels: dict[str, str]) -> str:
    """The ",key=value," list that label filters search with a portable LIKE."""
    return "," + "".join(f"{key}={value}," for key, value in sorted(labels.items()))


class FleetStatus(StrEnum):
    """A device's status as the dashboard and ``fleet_devices`` report it."""

    ONLINE = "online"
    OFFLINE = "offline"
    UPDATING = "updating"
    FAILED = "failed"
    SAFE_MODE = "safe_mode"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceAttributesUpdate(_In):
    """PATCH /devices/{id}: labels replace the old set; an explicit null group clears it."""

    labels: dict[LabelPart, LabelPart] | None = Field(default=None, max_length=MAX_LABELS)
    group: GroupName | None = None
    safe_mode: bool | None = Field(
        default=None, description="ask the device to run (true) or leave (false) its safe mode"
    )

    @model_validator(mode="after")
    def _labels_fit_the_index(self) -> DeviceAttributesUpdate:
        # 32 labels of 63-character keys and values would not fit the index column.
        if self.labels is not None and len(label_index(self.labels)) > LABEL_INDEX_CHARS:
            raise ValueError(f"labels take more than {LABEL_INDEX_CHARS} characters together")
        return self


class DeviceStatusUpdate(_In):
    status: AdminStatus


class RoleStatusPublic(BaseModel):
    name: str
    version: str | None
    health: Health
    safe_mode: bool = False


class RolloutHold(BaseModel):
    """An unfinished OS rollout that selects the device but holds its release back."""

    rollout: str
    version: str
    min_bootloader: str
    reason: str


class DevicePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    hostname: str
    hardware: str
    serial: str | None
    key_fingerprint: str | None = Field(
        default=None, description="SHA-256 of the ed25519 key the device signs with (ADR 0075)"
    )
    key_proved_at: datetime | None = Field(
        default=None, description="when a request signed with that key last passed (minute)"
    )
    group: str | None
    labels: dict[str, str]
    admin_status: AdminStatus
    status: FleetStatus
    enrolled_at: datetime
    last_seen: datetime | None
    image_version: str
    staged_version: str | None = Field(
        default=None, description="the release staged in the inactive slot, awaiting admission"
    )
    booted_slot: Slot
    committed_slot: Slot | None
    update_state: UpdateState
    health: Health
    roles: list[RoleStatusPublic]
    safe_mode: bool
    free_data_bytes: int | None
    uptime_s: float | None
    dropped_events: int
    desired_os_version: str | None
    desired_roles: dict[str, str]
    desired_safe_mode: bool
    node_exporter: str | None
    boot_mode: BootMode | None = Field(
        default=None, description="what the device's boot verified; None before it reported"
    )
    # From the last stored heartbeat; filled by GET /devices/{id} and the device page only.
    board: BoardReport | None = None
    bootloader: BootloaderReport | None = None
    held_back: list[RolloutHold] = Field(
        default_factory=list,
        description="OS rollouts that select the device but hold their release back (its "
        "bootloader is below their minimum); filled by GET /devices/{id} only",
    )


class LabelCount(BaseModel):
    key: str
    value: str
    devices: int


class DevicePage(BaseModel):
    items: list[DevicePublic]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class DeviceFilter:
    status: FleetStatus | None = None
    image_version: str | None = None
    role: str | None = None
    label: str | None = None
    group: str | None = None
    board: str | None = None
    # Devices whose bootloader is older than this bootloader release, or not reported.
    bootloader_below: Version | None = None


@dataclass(frozen=True)
class CachedDesiredState:
    """A desired-state answer as served: the body bytes and their ETag."""

    body: bytes
    etag: str

    def matches(self, if_none_match: str | None) -> bool:
        """Does an ``If-None-Match`` header name this answer (so it is a 304)?"""
        if if_none_match is None:
            return False
        if if_none_match == self.etag:
            return True
        return self.etag in {tag.strip() for tag in if_none_match.split(",")}


def role_statuses(raw: list[dict[str, Any]]) -> list[RoleStatusPublic]:
    return [RoleStatusPublic.model_validate(r) for r in raw]
