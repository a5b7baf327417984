"""desired_bootloader: devices.desired_bootloader_version, set by bootloader rollouts

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "devices", sa.Column("desired_bootloader_version", sa.String(length=40), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("devices", "desired_bootloader_version")
