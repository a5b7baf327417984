"""The device registry: one row per device, its heartbeats and its desired state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from fleetcore.layout import Slot
from fleetcore.wire import ROLE_INDEX_CHARS, Health, UpdateState
from overlord.db import BIG_ID, Base, str_enum, utcnow

LABEL_INDEX_CHARS = 4000


class AdminStatus(StrEnum):
    """What an operator decided about a device (PATCH /devices/{id}/status)."""

    ACTIVE = "active"
    QUARANTINED = "quarantined"
    DECOMMISSIONED = "decommissioned"


class Device(Base):
    __tablename__ = "devices"
    # Room on each page for the in-place (HOT) updates of heartbeats (ADR 0035).
    __table_args__ = {"postgresql_with": {"fillfactor": 80}}

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(253))
    hardware: Mapped[str] = mapped_column(String(16))
    serial: Mapped[str | None] = mapped_column(String(64), unique=True)
    # SHA-256 of the public key its credential is bound to (ADR 0075); None before keys.
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # When a request signed with that key last passed (per replica, at most once a minute).
    key_proved_at: Mapped[datetime | None]
    group_name: Mapped[str | None] = mapped_column(
        ForeignKey("device_groups.name", ondelete="SET NULL"), index=True
    )
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    admin_status: Mapped[AdminStatus] = mapped_column(
        str_enum(AdminStatus), default=AdminStatus.ACTIVE
    )
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Not indexed: every heartbeat sets it, and without an index PostgreSQL updates the row
    # in place (a HOT update, ADR 0035); status filters scan the devices table instead.
    last_seen: Mapped[datetime | None]
    image_version: Mapped[str] = mapped_column(String(40), index=True)
    # The release the device staged in its inactive slot, waiting for admission
    # (Heartbeat.staged_version, ADR 0082, migration 0016); None when nothing is staged.
    staged_version: Mapped[str | None] = mapped_column(String(40))
    booted_slot: Mapped[Slot] = mapped_column(str_enum(Slot))
    committed_slot: Mapped[Slot | None] = mapped_column(str_enum(Slot))
    update_state: Mapped[UpdateState] = mapped_column(
        str_enum(UpdateState), default=UpdateState.IDLE
    )
    health: Mapped[Health] = mapped_column(str_enum(Health), default=Health.UNKNOWN)
    roles: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # ",name," and ",key=value," lists, so role and label filters are portable LIKE queries.
    role_index: Mapped[str] = mapped_column(String(ROLE_INDEX_CHARS), default=",")
    label_index: Mapped[str] = mapped_column(String(LABEL_INDEX_CHARS), default=",")
    safe_mode: Mapped[bool] = mapped_column(default=False)
    free_data_bytes: Mapped[int | None] = mapped_column(BigInteger)
    uptime_s: Mapped[float | None]
    dropped_events: Mapped[int] = mapped_column(BigInteger, default=0)
    last_event_seq: Mapped[int] = mapped_column(BigInteger, default=-1)
    desired_os_version: Mapped[str | None] = mapped_column(String(40))
    # A bootloader release of the device's family (DesiredState.bootloader), set by rollouts.
    desired_bootloader_version: Mapped[str | None] = mapped_column(String(40))
    # The OS release a running rollout targets but has not admitted the device to yet
    # (DesiredState.prestage, ADR 0082); cleared when the rollout stops.
    prestage_os_version: Mapped[str | None] = mapped_column(String(40))
    desired_roles: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # An operator asked the device to run its safe-mode stack (DesiredState.safe_mode).
    desired_safe_mode: Mapped[bool] = mapped_column(default=False)
    node_exporter: Mapped[str | None] = mapped_column(String(261))
    # fleetcore.wire.BootMode as the last heartbeat reported it; None from older agents.
    boot_mode: Mapped[str | None] = mapped_column(String(32))
    # The configuration digest the device last reported applying (Heartbeat.config_digest).
    config_digest: Mapped[str | None] = mapped_column(String(64))
    # The board its last heartbeat reported (fleetcore.boards.Board: pi400, cm5, ...) and its
    # EEPROM bootloader's build timestamp (BootloaderReport.version), as columns so that
    # rollouts can target boards and require a minimum bootloader (migration 0013). Not
    # indexed, like every column a heartbeat sets (ADR 0035).
    board: Mapped[str | None] = mapped_column(String(16))
    bootloader_version: Mapped[int | None] = mapped_column(BigInteger)
    # Set while the device takes part in an unfinished rollout, so heartbeats skip the lookup.
    open_update: Mapped[bool] = mapped_column(default=False)


class DeviceHeartbeat(Base):
    """Heartbeat history, pruned after ``heartbeat_retention_days``."""

    __tablename__ = "device_heartbeats"
    __table_args__ = (Index("ix_device_heartbeats_device_time", "device_id", "received_at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    image_version: Mapped[str] = mapped_column(String(40))
    update_state: Mapped[UpdateState] = mapped_column(str_enum(UpdateState))
    health: Mapped[Health] = mapped_column(str_enum(Health))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class DesiredStateChange(Base):
    """A change of some device's desired state (``device_id`` null: possibly every device).

    Written by a session hook whenever a column a desired state is built from changes, and
    read by every replica a few times a second to drop its cached answers.
    """

    __tablename__ = "desired_state_changes"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    device_id: Mapped[str | None] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
