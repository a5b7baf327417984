"""devices.board and devices.bootloader_version as columns; rollouts target boards and may
require a minimum bootloader

The board and the EEPROM bootloader version were kept only in the heartbeat's JSON; as
columns, set by every heartbeat, rollouts can require a minimum bootloader before they offer
an OS release (deployment_rollouts.min_bootloader_version) and target boards, not only
families (deployment_rollouts.selector_boards; excluded boards are in selector_exclude's
JSON). Existing devices fill the columns with their next heartbeat.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("board", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("bootloader_version", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("deployment_rollouts") as batch:
        batch.add_column(sa.Column("min_bootloader_version", sa.String(length=40), nullable=True))
        batch.add_column(
            sa.Column("selector_boards", sa.JSON(), nullable=False, server_default="[]")
        )
    with op.batch_alter_table("deployment_rollouts") as batch:
        batch.alter_column("selector_boards", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("deployment_rollouts") as batch:
        batch.drop_column("selector_boards")
        batch.drop_column("min_bootloader_version")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("bootloader_version")
        batch.drop_column("board")
