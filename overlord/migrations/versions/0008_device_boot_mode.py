"""devices.boot_mode: what the device's last heartbeat says its boot verified (ADR 0071)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("boot_mode", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "boot_mode")
