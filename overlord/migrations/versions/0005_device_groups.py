"""deployment_configs is renamed device_groups (what it holds: a group's window and polling)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CONSTRAINTS = (
    ("device_groups", "pk_deployment_configs", "pk_device_groups"),
    ("devices", "fk_devices_group_name_deployment_configs", "fk_devices_group_name_device_groups"),
)


def upgrade() -> None:
    # SQLite (3.26+) rewrites the devices table's reference to the renamed table itself; its
    # constraint names live only in the table's DDL text, so only PostgreSQL renames them.
    op.rename_table("deployment_configs", "device_groups")
    if op.get_bind().dialect.name == "postgresql":
        for table, old, new in _CONSTRAINTS:
            op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, old, new in _CONSTRAINTS:
            op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {new} TO {old}")
    op.rename_table("device_groups", "deployment_configs")
