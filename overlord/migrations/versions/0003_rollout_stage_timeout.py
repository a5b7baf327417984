"""rollout stage timeout

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "deployment_rollouts",
        sa.Column("stage_timeout_s", sa.Integer(), nullable=False, server_default="7200"),
    )


def downgrade() -> None:
    op.drop_column("deployment_rollouts", "stage_timeout_s")
