"""Fixtures: a throw-away PostgreSQL database per test on the shared server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    """A new, empty database (schema not yet made), dropped afterwards."""
    name = f"simulator_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
