"""A fresh Overlord installation for a simulated fleet: keys, TUF repository, schema, tokens.

The simulator plays both the build host (it holds the offline keys and publishes releases
straight into the repository folder, as ``fleet-sign add-release`` does) and the operator
(tokens are created in the database, as ``overlord token create`` does).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from overlord import migrate
from overlord.auth import service as auth_service
from overlord.auth.models import KeyRole
from overlord.db import make_engine, make_sessionmaker, unit_of_work
from signing.keys import KeyStore
from signing.repository import init_repository

# Loopback simulations compress a fleet's hours into minutes and every simulated device
# shares one client address, so the per-device and per-address limits are lifted.
SIMULATION_RATE_PER_S = 100_000


@contextmanager
def scratch_database(pg_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on ``pg_url``'s server (its SQLAlchemy URL), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class Site:
    database_url: str
    repo_dir: Path
    keys_dir: Path

    @property
    def keys(self) -> KeyStore:
        return KeyStore.open(self.keys_dir)

    def env(self, **settings: object) -> dict[str, str]:
        """``OVERLORD_*`` variables for this site; ``settings`` add or override (lower case)."""
        values: dict[str, object] = {
            "database_url": self.database_url,
            "repo_dir": self.repo_dir,
            "keys_dir": self.keys_dir,
            "device_rate_per_s": SIMULATION_RATE_PER_S,
            "device_rate_burst": SIMULATION_RATE_PER_S,
            "anonymous_rate_per_s": SIMULATION_RATE_PER_S,
            "anonymous_rate_burst": SIMULATION_RATE_PER_S,
        }
        values.update(settings)
        return {f"OVERLORD_{key.upper()}": _text(value) for key, value in values.items()}

    def token(self, role: KeyRole, name: str) -> str:
        """A new credential, printed once by the caller."""
        engine = make_engine(self.database_url)
        try:
            with unit_of_work(make_sessionmaker(engine)) as session:
                _key, token = auth_service.create_key(session, role=role, name=name)
            return token
        finally:
            engine.dispose()


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def prepare_site(workdir: Path, database_url: str) -> Site:
    """Generate keys, an empty signed repository and the database schema below ``workdir``."""
    site = Site(database_url, workdir / "repo", workdir / "keys")
    keys = KeyStore.generate(site.keys_dir)
    init_repository(site.repo_dir, keys)
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return site
