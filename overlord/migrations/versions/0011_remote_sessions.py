"""remote_sessions: remote troubleshooting sessions (ADR 0074)

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overlord.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=32)


def upgrade() -> None:
    op.create_table(
        "remote_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("kind", _enum("sessionkind", "logs", "shell", "forward"), nullable=False),
        sa.Column("state", _enum("sessionstate", "pending", "active", "ended"), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("opened_by_key_id", sa.Integer(), nullable=True),
        sa.Column("opened_by", sa.String(length=200), nullable=False),
        sa.Column("opened_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("joined_at", overlord.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_activity_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", overlord.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "end_reason",
            _enum("endreason", "operator", "device", "idle", "expired", "join_timeout"),
            nullable=True,
        ),
        sa.Column("end_detail", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_sessions")),
    )
    op.create_index("ix_remote_sessions_device_state", "remote_sessions", ["device_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_remote_sessions_device_state", table_name="remote_sessions")
    op.drop_table("remote_sessions")
