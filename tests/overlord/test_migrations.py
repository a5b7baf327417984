"""The Alembic migrations produce exactly the schema the models describe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from overlord import migrate
from overlord.db import make_engine
from overlord.models import Base
from simulator.site import scratch_database


def test_migrations_match_the_models(database_url: str):
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'overlord.db'}"
        return
    with scratch_database(request.getfixturevalue("pg_url"), "overlord_migrate") as url:
        yield url


def test_the_device_group_rename_keeps_groups_and_their_devices(empty_database: str):
    """0005 renames deployment_configs to device_groups; rows and the devices' link survive,
    and the downgrade gives the old table back."""
    engine = make_engine(empty_database)
    try:
        migrate.upgrade(engine, "0004")
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO deployment_configs (name, description) VALUES ('lab', 'bench')")
            )
        migrate.upgrade(engine)
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT name, description FROM device_groups")).all()
            assert [tuple(r) for r in rows] == [("lab", "bench")]
            links = inspect(conn).get_foreign_keys("devices")
            assert {fk["referred_table"] for fk in links} >= {"device_groups"}
            assert "deployment_configs" not in {fk["referred_table"] for fk in links}
        config = migrate.alembic_config(engine)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0004")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT name FROM deployment_configs")).scalar() == "lab"
    finally:
        engine.dispose()


def test_the_audit_log_table_comes_with_its_guard_and_goes_with_it(empty_database: str):
    """0006 adds audit_log with the triggers that refuse UPDATE and DELETE; the downgrade
    removes both (PostgreSQL's trigger function too), so upgrading again works."""
    engine = make_engine(empty_database)
    config = migrate.alembic_config(engine)
    try:
        migrate.upgrade(engine, "0005")
        migrate.upgrade(engine)
        insert = text(
            "INSERT INTO audit_log (at, actor_name, source, via, action, object_type) "
            "VALUES (CURRENT_TIMESTAMP, 'ops', 'local', 'cli', 'group.create', 'group')"
        )
        with engine.begin() as conn:
            conn.execute(insert)
        for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0005")
        with engine.connect() as conn:
            assert "audit_log" not in inspect(conn).get_table_names()
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(insert)
            assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar() == 1
    finally:
        engine.dispose()


def test_the_config_variables_table_comes_and_goes_with_the_devices_digest(empty_database: str):
    """0007 adds config_variables (one row per scope, target and key; plain or sealed, never
    both) and devices.config_digest; the downgrade removes both and keeps the devices."""
    engine = make_engine(empty_database)
    config = migrate.alembic_config(engine)
    insert = text(
        "INSERT INTO config_variables (scope, target, key, value, sealed, updated_at) "
        "VALUES ('fleet', '', 'FPS', :value, :sealed, CURRENT_TIMESTAMP)"
    )
    try:
        migrate.upgrade(engine, "0006")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (id, hostname, hardware, labels, admin_status, "
                    "enrolled_at, image_version, booted_slot, update_state, health, roles, "
                    "role_index, label_index, safe_mode, dropped_events, last_event_seq, "
                    "desired_roles, desired_safe_mode, open_update) VALUES ('dev-1', 'pi', "
                    "'pi4', '{}', 'active', CURRENT_TIMESTAMP, '1.0.0', 'a', 'idle', "
                    "'unknown', '[]', ',', ',', false, 0, -1, '{}', false, false)"
                )
            )
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(insert, {"value": "25", "sealed": None})
            conn.execute(text("UPDATE devices SET config_digest = :d"), {"d": "a" * 64})
        for duplicate in ({"value": "30", "sealed": None}, {"value": None, "sealed": None}):
            with pytest.raises(DBAPIError), engine.begin() as conn:
                conn.execute(insert, duplicate)
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO config_variables (scope, target, key, value, sealed, "
                    "updated_at) VALUES ('group', 'g', 'X', 'plain', 'v1.x.y', CURRENT_TIMESTAMP)"
                )
            )
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0006")
        with engine.connect() as conn:
            assert "config_variables" not in inspect(conn).get_table_names()
            assert "config_digest" not in {c["name"] for c in inspect(conn).get_columns("devices")}
            assert conn.execute(text("SELECT id FROM devices")).scalar() == "dev-1"
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(insert, {"value": "25", "sealed": None})
    finally:
        engine.dispose()


def test_a_rollout_keeps_its_group_through_the_targeting_migration(empty_database: str):
    """0010 turns selector_group into the list selector_groups and adds the schedule and the
    exclusions; the downgrade gives the first group back."""
    engine = make_engine(empty_database)
    config = migrate.alembic_config(engine)
    columns = (
        "name, kind, version, target, selector_labels, selector_hardware, canary_devices, "
        "stages, success_window_s, failure_threshold, state, current_stage, created_at, "
        "updated_at"
    )
    values = (
        "'os', '1.1.0', 'os/1.1.0/manifest.json', '{}', '[]', 1, '[100]', 0, 0.05, "
        "'pending', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP"
    )
    try:
        migrate.upgrade(engine, "0009")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO device_groups (name, description) VALUES ('lab', '')"))
            conn.execute(
                text(
                    f"INSERT INTO deployment_rollouts ({columns}, selector_group) "
                    f"VALUES ('grouped', {values}, 'lab')"
                )
            )
            conn.execute(
                text(f"INSERT INTO deployment_rollouts ({columns}) VALUES ('all', {values})")
            )
        migrate.upgrade(engine)
        with engine.begin() as conn:
            rows = conn.execute(
                text(
                    "SELECT name, selector_groups, selector_exclude, start_at, deadline "
                    "FROM deployment_rollouts ORDER BY name"
                )
            ).all()
            assert [
                (r.name, _json(r.selector_groups), _json(r.selector_exclude)) for r in rows
            ] == [
                ("all", [], {}),
                ("grouped", ["lab"], {}),
            ]
            assert all(r.start_at is None and r.deadline is None for r in rows)
            assert "selector_group" not in {
                c["name"] for c in inspect(conn).get_columns("deployment_rollouts")
            }
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0009")
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT name, selector_group FROM deployment_rollouts ORDER BY name")
            ).all()
            assert [tuple(r) for r in rows] == [("all", None), ("grouped", "lab")]
    finally:
        engine.dispose()


def _json(value: object) -> object:
    """A JSON column as SQLite (text) or PostgreSQL (decoded) returns it from raw SQL."""
    return json.loads(value) if isinstance(value, str) else value


def test_the_remote_sessions_table_comes_and_goes(empty_database: str):
    """0011 adds remote_sessions (ids unique); the downgrade removes it and an upgrade after
    that adds it again."""
    engine = make_engine(empty_database)
    config = migrate.alembic_config(engine)
    insert = text(
        "INSERT INTO remote_sessions (id, device_id, kind, state, params, opened_by, opened_at, "
        "last_activity_at) VALUES (:id, 'dev-1', 'logs', :state, '{}', 'admin', "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(insert, {"id": "s" * 22, "state": "pending"})
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(insert, {"id": "s" * 22, "state": "active"})
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0010")
        with engine.connect() as conn:
            assert "remote_sessions" not in inspect(conn).get_table_names()
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(insert, {"id": "s" * 22, "state": "active"})
    finally:
        engine.dispose()
