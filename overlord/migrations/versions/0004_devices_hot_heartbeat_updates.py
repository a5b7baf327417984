"""devices: no index on last_seen, fillfactor 80 (heartbeats update rows in place)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index(op.f("ix_devices_last_seen"), table_name="devices")
    if op.get_bind().dialect.name == "postgresql":
        # Applies to pages written from now on; VACUUM FULL devices rewrites the old ones.
        op.execute("ALTER TABLE devices SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE devices RESET (fillfactor)")
    op.create_index(op.f("ix_devices_last_seen"), "devices", ["last_seen"], unique=False)
