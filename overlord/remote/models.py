"""The ``remote_sessions`` table: one row per troubleshooting session (ADR 0074).

A session is ``pending`` until its device joins, ``active`` while the device is connected and
``ended`` for good, with the reason. No foreign key to ``devices``: devices are never deleted,
and a session's row is the record of who looked at what.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from overlord.audit.models import NAME_CHARS
from overlord.db import Base, str_enum, utcnow

TABLE = "remote_sessions"
RECORDINGS = "remote_recordings"
SESSION_ID_CHARS = 32
DETAIL_CHARS = 200


class SessionKind(StrEnum):
    LOGS = "logs"
    SHELL = "shell"
    FORWARD = "forward"


class SessionState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    ENDED = "ended"


class EndReason(StrEnum):
    OPERATOR = "operator"
    DEVICE = "device"
    IDLE = "idle"
    EXPIRED = "expired"
    JOIN_TIMEOUT = "join_timeout"
    ERROR = "error"


OPEN_STATES = (SessionState.PENDING, SessionState.ACTIVE)


class RemoteSession(Base):
    __tablename__ = TABLE
    __table_args__ = (Index("ix_remote_sessions_device_state", "device_id", "state"),)

    id: Mapped[str] = mapped_column(String(SESSION_ID_CHARS), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[SessionKind] = mapped_column(str_enum(SessionKind))
    state: Mapped[SessionState] = mapped_column(str_enum(SessionState))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    opened_by_key_id: Mapped[int | None] = mapped_column(Integer)
    opened_by: Mapped[str] = mapped_column(String(NAME_CHARS))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    joined_at: Mapped[datetime | None]
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[EndReason | None] = mapped_column(str_enum(EndReason))
    end_detail: Mapped[str | None] = mapped_column(String(DETAIL_CHARS))


class RecordingPiece(Base):
    """One flushed piece of a shell session's asciicast recording, in order by ``seq``
    (piece 0 is the header); a recording is all the pieces of its session joined."""

    __tablename__ = RECORDINGS

    session_id: Mapped[str] = mapped_column(String(SESSION_ID_CHARS), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    written_at: Mapped[datetime] = mapped_column(default=utcnow)
