"""staged_version: devices.staged_version, the release a device staged (ADR 0082)

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("staged_version", sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "staged_version")
