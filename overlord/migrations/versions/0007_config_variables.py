"""config_variables: fleet, group and device configuration; devices.config_digest

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overlord.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "config_variables",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "scope",
            sa.Enum("fleet", "group", "device", name="configscope", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("sealed", sa.Text(), nullable=True),
        sa.Column("updated_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(value IS NULL) <> (sealed IS NULL)",
            name=op.f("ck_config_variables_plain_or_sealed"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_variables")),
        sa.UniqueConstraint(
            "scope", "target", "key", name=op.f("uq_config_variables_scope_target_key")
        ),
    )
    op.add_column("devices", sa.Column("config_digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "config_digest")
    op.drop_table("config_variables")
