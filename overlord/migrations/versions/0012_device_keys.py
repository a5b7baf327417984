"""device_keys: per-device ed25519 public keys bound at enrolment, when last proved (ADR 0075)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overlord.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # On the credential: a revoked or rotated credential takes its key with it, and the
    # existing change-log invalidation reaches every replica's cached principal.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("public_key", sa.String(length=44), nullable=True))
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("key_fingerprint", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("key_proved_at", overlord.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("key_proved_at")
        batch.drop_column("key_fingerprint")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("public_key")
