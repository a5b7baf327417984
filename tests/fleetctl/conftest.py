"""A real ``overlord serve`` process (SQLite, or PostgreSQL for integration) and fleetctl run
as its own process against it, as an operator's laptop would."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetcore.wire import RegisterResponse
from overlord import migrate
from overlord.auth import service as auth_service
from overlord.auth.models import KeyRole
from overlord.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from overlord.rollouts import service as rollouts_service
from simulator.site import scratch_database
from tests.overlord.conftest import heartbeat
from tests.overlord.servers import overlord_process, overlord_serve, server_env
from tests.overlord.tufrepo import Repo, make_repo

SOURCE = Path(__file__).parents[2]


@dataclass
class Fleet:
    """The served Overlord, its database and repository, and an isolated operator home."""

    url: str
    database_url: str
    repo: Repo
    home: Path
    admin: str
    enrollment: str
    devices: dict[str, dict[str, str]] = field(default_factory=dict)

    def token(self, role: KeyRole, *, expires_at: datetime | None = None) -> str:
        engine = make_engine(self.database_url)
        try:
            with unit_of_work(make_sessionmaker(engine)) as session:
                _key, token = auth_service.create_key(
                    session, role=role, name=f"fleetctl test {role.value}", expires_at=expires_at
                )
            return token
        finally:
            engine.dispose()

    def expired_token(self) -> str:
        return self.token(KeyRole.ADMIN, expires_at=utcnow() - timedelta(seconds=1))

    def env(self, **extra: str) -> dict[str, str]:
        """fleetctl's environment: this source tree, a private config dir, no FLEET_*."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FLEET_URL", "FLEET_TOKEN", "XDG_CONFIG_HOME"))
        }
        return (
            base
            | {
                "PYTHONPATH": str(SOURCE),
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / "config"),
            }
            | extra
        )

    def run(
        self,
        *args: str,
        token: str | None = None,
        auth: bool = True,
        stdin: str = "",
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        """``python -m fleetctl ARGS`` with --url/--token unless ``auth`` is false."""
        creds = ["--url", self.url, "--token", token or self.admin] if auth else []
        return subprocess.run(
            [sys.executable, "-m", "fleetctl", *creds, *args],
            env=self.env(**env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, token: str | None = None, stdin: str = "") -> str:
        result = self.run(*args, token=token, stdin=stdin)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout

    def json(self, *args: str, token: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", token=token))

    def enroll(self, serial: str, *, version: str = "1.0.0") -> str:
        body = {
            "enrollment_token": self.enrollment,
            "hostname": serial.lower(),
            "hardware": "pi4",
            "serial": serial,
            "image_version": version,
            "booted_slot": "a",
        }
        answer = httpx.post(f"{self.url}/api/v1/devices/register", json=body)
        assert answer.status_code == 201, answer.text
        reg = RegisterResponse.model_validate(answer.json())
        auth = {"Authorization": f"Bearer {reg.device_token}"}
        beat = httpx.post(
            f"{self.url}/api/v1/devices/{reg.device_id}/heartbeat",
            json=heartbeat(version),
            headers=auth,
        )
        assert beat.status_code == 204, beat.text
        self.devices[reg.device_id] = auth
        return reg.device_id

    def tick(self) -> None:
        """One pass of the rollout engine (the server runs without its scheduler)."""
        engine = make_engine(self.database_url)
        try:
            with unit_of_work(make_sessionmaker(engine)) as session:
                rollouts_service.tick(session)
        finally:
            engine.dispose()


def one_line_error(
    result: subprocess.CompletedProcess[str], code: int = 1, *, after_progress: bool = False
) -> str:
    """The failure is ``code``, one error line and at most one hint line, no traceback
    (``after_progress``: following progress lines, which a non-terminal gets one per step)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    if after_progress:
        lines = lines[next(i for i, line in enumerate(lines) if line.startswith("fleetctl:")) :]
    assert lines[0].startswith("fleetctl: error: "), result.stderr
    assert len(lines) <= 2 and all(line.startswith("fleetctl: ") for line in lines), lines
    assert "Traceback" not in result.stderr
    return result.stderr


Server = Callable[..., contextlib.AbstractContextManager[str]]


def _serve(
    database_url: str, root: Path, *, server: Server = overlord_process, **extra_env: str
) -> Iterator[Fleet]:
    repo = make_repo(root / "tuf")
    repo.add_os("1.0.0")
    repo.add_os("1.1.0")
    env = server_env(database_url, repo, **extra_env)
    home = root / "home"
    home.mkdir()
    with server(env, log=root / "overlord.log") as url:
        fleet = Fleet(url, database_url, repo, home, admin="", enrollment="")
        fleet.admin = fleet.token(KeyRole.ADMIN)
        fleet.enrollment = fleet.token(KeyRole.ENROLLMENT)
        yield fleet


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    url = f"sqlite:///{tmp_path / 'overlord.db'}"
    migrate.upgrade(make_engine(url))
    yield from _serve(url, tmp_path)


@pytest.fixture
def pg_fleet(pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    with scratch_database(pg_url, "fleetctl_test") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield from _serve(url, tmp_path)


@pytest.fixture
def served_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Through ``overlord serve`` logging JSON lines to ``tmp_path / 'overlord.log'``."""
    url = f"sqlite:///{tmp_path / 'overlord.db'}"
    yield from _serve(url, tmp_path, server=overlord_serve, FLEET_LOG_FORMAT="json")
