"""deployment_rollouts: a schedule (start_at, deadline), several groups, and exclusions

selector_group (one group) becomes selector_groups (a list); selector_exclude holds the
exclusions. Existing rollouts keep their group as a one-item list, and the downgrade keeps the
first group of each.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overlord.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_rollouts = sa.table(
    "deployment_rollouts",
    sa.column("id", sa.BigInteger()),
    sa.column("selector_group", sa.String(64)),
    sa.column("selector_groups", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("deployment_rollouts") as batch:
        batch.add_column(
            sa.Column("selector_groups", sa.JSON(), nullable=False, server_default="[]")
        )
        batch.add_column(
            sa.Column("selector_exclude", sa.JSON(), nullable=False, server_default="{}")
        )
        batch.add_column(sa.Column("start_at", overlord.db.UTCDateTime(timezone=True)))
        batch.add_column(sa.Column("deadline", overlord.db.UTCDateTime(timezone=True)))
    conn = op.get_bind()
    grouped = conn.execute(
        sa.select(_rollouts.c.id, _rollouts.c.selector_group).where(
            _rollouts.c.selector_group.is_not(None)
        )
    ).all()
    for rollout_id, group in grouped:
        conn.execute(
            _rollouts.update().where(_rollouts.c.id == rollout_id).values(selector_groups=[group])
        )
    with op.batch_alter_table("deployment_rollouts") as batch:
        batch.alter_column("selector_groups", server_default=None)
        batch.alter_column("selector_exclude", server_default=None)
        batch.drop_column("selector_group")


def downgrade() -> None:
    with op.batch_alter_table("deployment_rollouts") as batch:
        batch.add_column(sa.Column("selector_group", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    for rollout_id, groups in conn.execute(
        sa.select(_rollouts.c.id, _rollouts.c.selector_groups)
    ).all():
        if groups:
            conn.execute(
                _rollouts.update()
                .where(_rollouts.c.id == rollout_id)
                .values(selector_group=groups[0])
            )
    with op.batch_alter_table("deployment_rollouts") as batch:
        batch.drop_column("deadline")
        batch.drop_column("start_at")
        batch.drop_column("selector_exclude")
        batch.drop_column("selector_groups")
