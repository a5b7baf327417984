"""prestage: devices.prestage_os_version, set by running OS rollouts (ADR 0082)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("prestage_os_version", sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "prestage_os_version")
