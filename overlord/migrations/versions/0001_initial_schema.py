"""initial schema

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overlord.db

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column(
            "kind",
            sa.Enum(
                "rollout-halted",
                "device-rolled-back",
                "safe-mode",
                name="alertkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_alert_rules")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "rollout-halted",
                "device-rolled-back",
                "safe-mode",
                name="alertkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", overlord.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_created_at"), "alerts", ["created_at"], unique=False)
    op.create_index(op.f("ix_alerts_subject"), "alerts", ["subject"], unique=False)
    op.create_table(
        "deployment_configs",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("window_start", sa.Time(), nullable=True),
        sa.Column("window_end", sa.Time(), nullable=True),
        sa.Column("poll_interval_s", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_deployment_configs")),
    )
    op.create_table(
        "deployment_rollouts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("os", "role", name="releasekind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("role_name", sa.String(length=64), nullable=True),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("selector_group", sa.String(length=64), nullable=True),
        sa.Column("selector_labels", sa.JSON(), nullable=False),
        sa.Column("selector_hardware", sa.JSON(), nullable=False),
        sa.Column("canary_devices", sa.Integer(), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("success_window_s", sa.Integer(), nullable=False),
        sa.Column("failure_threshold", sa.Float(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "running",
                "paused",
                "halted",
                "aborted",
                "completed",
                name="rolloutstate",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("current_stage", sa.Integer(), nullable=False),
        sa.Column("stage_settled_at", overlord.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("halt_reason", sa.Text(), nullable=True),
        sa.Column("created_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_rollouts")),
        sa.UniqueConstraint("name", name=op.f("uq_deployment_rollouts_name")),
    )
    op.create_index(
        op.f("ix_deployment_rollouts_state"), "deployment_rollouts", ["state"], unique=False
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("hardware", sa.String(length=16), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("group_name", sa.String(length=64), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column(
            "admin_status",
            sa.Enum(
                "active",
                "quarantined",
                "decommissioned",
                name="adminstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("enrolled_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen", overlord.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("image_version", sa.String(length=40), nullable=False),
        sa.Column(
            "booted_slot",
            sa.Enum("a", "b", name="slot", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column(
            "committed_slot",
            sa.Enum("a", "b", name="slot", native_enum=False, length=32),
            nullable=True,
        ),
        sa.Column(
            "update_state",
            sa.Enum(
                "idle",
                "downloading",
                "installing",
                "verifying",
                "trial-reboot",
                "trial",
                "committing",
                "committed",
                "rolled-back",
                "failed",
                name="updatestate",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "health",
            sa.Enum(
                "healthy",
                "degraded",
                "unhealthy",
                "unknown",
                name="health",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("role_index", sa.String(length=2000), nullable=False),
        sa.Column("label_index", sa.String(length=4000), nullable=False),
        sa.Column("safe_mode", sa.Boolean(), nullable=False),
        sa.Column("free_data_bytes", sa.BigInteger(), nullable=True),
        sa.Column("uptime_s", sa.Double(), nullable=True),
        sa.Column("dropped_events", sa.BigInteger(), nullable=False),
        sa.Column("last_event_seq", sa.BigInteger(), nullable=False),
        sa.Column("desired_os_version", sa.String(length=40), nullable=True),
        sa.Column("desired_roles", sa.JSON(), nullable=False),
        sa.Column("open_update", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_name"],
            ["deployment_configs.name"],
            name=op.f("fk_devices_group_name_deployment_configs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("serial", name=op.f("uq_devices_serial")),
    )
    op.create_index(op.f("ix_devices_group_name"), "devices", ["group_name"], unique=False)
    op.create_index(op.f("ix_devices_image_version"), "devices", ["image_version"], unique=False)
    op.create_index(op.f("ix_devices_last_seen"), "devices", ["last_seen"], unique=False)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin",
                "operator",
                "viewer",
                "enrollment",
                "device",
                name="keyrole",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", overlord.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", overlord.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_api_keys_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_keys_token_hash")),
    )
    op.create_index(op.f("ix_api_keys_device_id"), "api_keys", ["device_id"], unique=False)
    op.create_table(
        "device_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("time", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "enrolled",
                "update-available",
                "download-progress",
                "install-started",
                "install-progress",
                "install-failed",
                "trial-started",
                "update-committed",
                "rollback",
                "version-marked-bad",
                "role-applied",
                "role-failed",
                "role-rollback",
                "safe-mode-entered",
                "safe-mode-left",
                "telemetry-dropped",
                name="eventkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_events_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_events")),
        sa.UniqueConstraint("device_id", "seq", name="uq_device_events_device_seq"),
    )
    op.create_index(
        op.f("ix_device_events_device_id"), "device_events", ["device_id"], unique=False
    )
    op.create_table(
        "device_heartbeats",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("received_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("image_version", sa.String(length=40), nullable=False),
        sa.Column(
            "update_state",
            sa.Enum(
                "idle",
                "downloading",
                "installing",
                "verifying",
                "trial-reboot",
                "trial",
                "committing",
                "committed",
                "rolled-back",
                "failed",
                name="updatestate",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "health",
            sa.Enum(
                "healthy",
                "degraded",
                "unhealthy",
                "unknown",
                name="health",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_heartbeats_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_heartbeats")),
    )
    op.create_index(
        "ix_device_heartbeats_device_time",
        "device_heartbeats",
        ["device_id", "received_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_device_heartbeats_received_at"), "device_heartbeats", ["received_at"], unique=False
    )
    op.create_table(
        "device_updates",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "rollout_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column(
            "outcome",
            sa.Enum(
                "pending",
                "updating",
                "succeeded",
                "failed",
                name="outcome",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("previous_version", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("admitted_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", overlord.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_updates_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["deployment_rollouts.id"],
            name=op.f("fk_device_updates_rollout_id_deployment_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_updates")),
        sa.UniqueConstraint("rollout_id", "device_id", name="uq_device_updates_pair"),
    )
    op.create_index(
        op.f("ix_device_updates_device_id"), "device_updates", ["device_id"], unique=False
    )
    op.create_index(
        op.f("ix_device_updates_rollout_id"), "device_updates", ["rollout_id"], unique=False
    )
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", overlord.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_dashboard_sessions_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_sessions")),
        sa.UniqueConstraint("session_hash", name=op.f("uq_dashboard_sessions_session_hash")),
    )


def downgrade() -> None:
    op.drop_table("dashboard_sessions")
    op.drop_index(op.f("ix_device_updates_rollout_id"), table_name="device_updates")
    op.drop_index(op.f("ix_device_updates_device_id"), table_name="device_updates")
    op.drop_table("device_updates")
    op.drop_index(op.f("ix_device_heartbeats_received_at"), table_name="device_heartbeats")
    op.drop_index("ix_device_heartbeats_device_time", table_name="device_heartbeats")
    op.drop_table("device_heartbeats")
    op.drop_index(op.f("ix_device_events_device_id"), table_name="device_events")
    op.drop_table("device_events")
    op.drop_index(op.f("ix_api_keys_device_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_index(op.f("ix_devices_last_seen"), table_name="devices")
    op.drop_index(op.f("ix_devices_image_version"), table_name="devices")
    op.drop_index(op.f("ix_devices_group_name"), table_name="devices")
    op.drop_table("devices")
    op.drop_table("leases")
    op.drop_index(op.f("ix_deployment_rollouts_state"), table_name="deployment_rollouts")
    op.drop_table("deployment_rollouts")
    op.drop_table("deployment_configs")
    op.drop_index(op.f("ix_alerts_subject"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_created_at"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
