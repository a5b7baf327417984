"""Credentials (hashed at rest), dashboard sessions and scheduler leases."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from overlord.db import Base, str_enum, utcnow


class KeyRole(StrEnum):
    """What a credential may do. Operator roles are ordered admin > operator > viewer."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    ENROLLMENT = "enrollment"
    DEVICE = "device"


OPERATOR_RANK = {KeyRole.VIEWER: 1, KeyRole.OPERATOR: 2, KeyRole.ADMIN: 3}


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[KeyRole] = mapped_column(str_enum(KeyRole))
    name: Mapped[str] = mapped_column(String(200), default="")
    device_id: Mapped[str | None] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # A device credential's ed25519 public key (base64), when the device sent one (ADR 0075).
    public_key: Mapped[str | None] = mapped_column(String(44))


class DashboardSession(Base):
    __tablename__ = "dashboard_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime]


class Lease(Base):
    """A named lease one replica holds at a time (timestamp signer, rollout engine)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]
