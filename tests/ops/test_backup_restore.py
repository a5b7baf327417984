"""bin/backup and bin/restore against the real PostgreSQL: backup, wipe, restore, same rows."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.ops.tools import DEPLOY_DIR, run_tool

pytestmark = pytest.mark.integration

BIN = DEPLOY_DIR / "bin"
SCHEMA = """
CREATE TABLE devices (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    image_version text NOT NULL,
    labels jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE device_events (
    id bigserial PRIMARY KEY,
    device_id bigint NOT NULL REFERENCES devices (id),
    reason text,
    payload bytea
);
INSERT INTO devices (name, image_version, labels)
SELECT 'pi-' || lpad(n::text, 4, '0'), '1.' || (n % 3) || '.0', jsonb_build_object('site', n % 5)
FROM generate_series(1, 200) AS n;
INSERT INTO device_events (device_id, reason, payload)
SELECT id, 'rolled back: health check "camera" failed ✗', decode('00ff10', 'hex') FROM devices;
"""


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def database(pg_url: str) -> Iterator[str]:
    """A fresh database with some rows; yields its SQLAlchemy-style URL."""
    name = f"ops_backup_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(libpq(url)) as conn:
        conn.execute(SCHEMA)
    yield url
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def snapshot(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(libpq(url)) as conn:
        rows = conn.execute(
            "SELECT d.id, d.name, d.image_version, d.labels, e.reason, e.payload "
            "FROM devices d JOIN device_events e ON e.device_id = d.id ORDER BY d.id"
        ).fetchall()
        last_id = conn.execute("SELECT last_value FROM devices_id_seq").fetchone()
    return [*rows, ("sequence", last_id)]


def tables(url: str) -> set[str]:
    with psycopg.connect(libpq(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows}


def backup(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = run_tool([BIN / "backup", *args], env={**os.environ, **(env or {})})
    return result.returncode, result.stderr


def restore(*args: str | Path) -> tuple[int, str]:
    result = run_tool([BIN / "restore", *args])
    return result.returncode, result.stderr


def the_backup(out: Path) -> Path:
    made = sorted(out.glob("overlord-*"))
    assert len(made) == 1, made
    return made[0]


def test_backup_wipe_restore_brings_the_same_rows_back(database: str, tmp_path: Path):
    data_dir = tmp_path / "overlord-data"
    (data_dir / "tuf" / "metadata").mkdir(parents=True)
    (data_dir / "tuf" / "metadata" / "1.root.json").write_text('{"signed": {}}')
    before = snapshot(database)
    out = tmp_path / "backups"

    code, err = backup("--database-url", database, "--data-dir", data_dir, "--output", out)
    assert code == 0, err
    made = the_backup(out)
    assert sorted(p.name for p in made.iterdir()) == ["SHA256SUMS", "data.tar.gz", "db.dump"]
    assert not list(out.glob(".*partial*"))

    # Wipe: drop the data, add a table the backup never had, lose the TUF folder.
    with psycopg.connect(libpq(database)) as conn:
        conn.execute("DROP TABLE device_events; DELETE FROM devices; CREATE TABLE stray (x int)")
    (data_dir / "tuf" / "metadata" / "1.root.json").unlink()
    (data_dir / "junk").write_text("x")

    code, err = restore(made, "--yes", "--database-url", database, "--data-dir", data_dir)
    assert code == 0, err
    assert snapshot(database) == before
    assert tables(database) == {"devices", "device_events"}
    assert (data_dir / "tuf" / "metadata" / "1.root.json").read_text() == '{"signed": {}}'
    assert not (data_dir / "junk").exists()


def test_backup_through_libpq_environment(database: str, tmp_path: Path):
    parts = urlsplit(libpq(database))
    env = {
        "PGHOST": parts.hostname or "",
        "PGPORT": str(parts.port),
        "PGUSER": parts.username or "",
        "PGDATABASE": parts.path.lstrip("/"),
    }
    code, err = backup("--output", tmp_path, env=env)
    assert code == 0, err
    before = snapshot(database)
    with psycopg.connect(libpq(database)) as conn:
        conn.execute("TRUNCATE device_events")
    code, err = restore(the_backup(tmp_path), "--yes", "--database-url", database)
    assert code == 0, err
    assert snapshot(database) == before


def test_retention_keeps_the_newest(database: str, tmp_path: Path):
    for stamp in ("20250101T000000Z", "20250102T000000Z", "20250103T000000Z"):
        (tmp_path / f"overlord-{stamp}").mkdir()
    code, err = backup("--database-url", database, "--output", tmp_path, "--keep", "2")
    assert code == 0, err
    kept = sorted(p.name for p in tmp_path.glob("overlord-*"))
    assert len(kept) == 2
    assert kept[0] == "overlord-20250103T000000Z"
    assert "removed old backup overlord-20250101T000000Z" in err


def test_damaged_backup_is_refused_and_the_database_untouched(database: str, tmp_path: Path):
    code, err = backup("--database-url", database, "--output", tmp_path)
    assert code == 0, err
    made = the_backup(tmp_path)
    with (made / "db.dump").open("r+b") as dump:
        dump.seek(-20, os.SEEK_END)
        dump.write(b"\0" * 20)
    before = snapshot(database)
    code, err = restore(made, "--yes", "--database-url", database)
    assert code == 1
    assert "restore: error: checksums of" in err
    assert snapshot(database) == before


def test_unreachable_database_fails_cleanly(tmp_path: Path):
    code, err = backup(
        "--database-url", "postgresql+psycopg://postgres@127.0.0.1:1/nowhere", "--output", tmp_path
    )
    assert code != 0
    assert "pg_dump" in err
    assert list(tmp_path.iterdir()) == []
