"""device safe mode request and node exporter address

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "devices",
        sa.Column("desired_safe_mode", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("devices", sa.Column("node_exporter", sa.String(length=261), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "node_exporter")
    op.drop_column("devices", "desired_safe_mode")
