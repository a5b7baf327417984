"""safe mode request, node exporter address, desired-state change log

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overlord.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desired_state_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=True),
        sa.Column("changed_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desired_state_changes")),
    )
    op.create_index(
        op.f("ix_desired_state_changes_changed_at"),
        "desired_state_changes",
        ["changed_at"],
        unique=False,
    )
    op.add_column(
        "devices",
        sa.Column("desired_safe_mode", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("devices", sa.Column("node_exporter", sa.String(length=261), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "node_exporter")
    op.drop_column("devices", "desired_safe_mode")
    op.drop_index(op.f("ix_desired_state_changes_changed_at"), table_name="desired_state_changes")
    op.drop_table("desired_state_changes")
