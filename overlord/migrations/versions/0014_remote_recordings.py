"""remote_recordings: the asciicast recordings of remote shells (ADR 0074, shell slice)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overlord.db

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remote_recordings",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("written_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "seq", name=op.f("pk_remote_recordings")),
    )


def downgrade() -> None:
    op.drop_table("remote_recordings")
