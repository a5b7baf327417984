"""Device groups with maintenance windows, rollouts and each device's part in a rollout."""

from __future__ import annotations

from datetime import datetime, time
from enum import StrEnum

from sqlalchemy import JSON, Float, ForeignKey, String, Text, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from overlord.db import BIG_ID, Base, str_enum, utcnow


class RolloutState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"
    ABORTED = "aborted"
    COMPLETED = "completed"


TERMINAL_STATES = frozenset({RolloutState.ABORTED, RolloutState.COMPLETED})


class ReleaseKind(StrEnum):
    OS = "os"
    ROLE = "role"
    BOOTLOADER = "bootloader"  # an EEPROM bootloader release of one family (fleetcore.eeprom)


class DeviceOutcome(StrEnum):
    PENDING = "pending"
    UPDATING = "updating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # No success reported within the rollout's stage timeout of admission: counts as a
    # failure for the halt threshold; a late success or failure report still replaces it.
    TIMED_OUT = "timed_out"


class DeviceGroup(Base):
    """A device group: its maintenance window (UTC) and poll interval."""

    __tablename__ = "device_groups"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    window_start: Mapped[time | None] = mapped_column(Time)
    window_end: Mapped[time | None] = mapped_column(Time)
    poll_interval_s: Mapped[int | None]


class DeploymentRollout(Base):
    __tablename__ = "deployment_rollouts"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[ReleaseKind] = mapped_column(str_enum(ReleaseKind))
    role_name: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(255))
    selector_groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    selector_labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    selector_hardware: Mapped[list[str]] = mapped_column(JSON, default=list)
    selector_boards: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Exclusion as the API takes it: {"groups": [...], "labels": {...}, "hardware": [...],
    # "boards": [...], "devices": [...]}.
    selector_exclude: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    # An OS rollout offers its release only to devices whose EEPROM bootloader is at least
    # this bootloader release version (fleetcore.eeprom.release_version); None: no minimum.
    min_bootloader_version: Mapped[str | None] = mapped_column(String(40))
    canary_devices: Mapped[int]
    stages: Mapped[list[int]] = mapped_column(JSON)
    success_window_s: Mapped[int]
    stage_timeout_s: Mapped[int] = mapped_column(default=7200, server_default="7200")
    failure_threshold: Mapped[float] = mapped_column(Float)
    start_at: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    state: Mapped[RolloutState] = mapped_column(str_enum(RolloutState), index=True)
    current_stage: Mapped[int] = mapped_column(default=0)
    stage_settled_at: Mapped[datetime | None]
    halt_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeviceUpdate(Base):
    """One device admitted to one rollout, and how it went."""

    __tablename__ = "device_updates"
    __table_args__ = (UniqueConstraint("rollout_id", "device_id", name="uq_device_updates_pair"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("deployment_rollouts.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    stage: Mapped[int]
    outcome: Mapped[DeviceOutcome] = mapped_column(
        str_enum(DeviceOutcome), default=DeviceOutcome.PENDING
    )
    previous_version: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    admitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
