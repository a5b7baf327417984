"""Fixtures: an Overlord app on SQLite (unit) or a real PostgreSQL (integration)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from fleetcore.layout import Slot
from fleetcore.release import Hardware
from fleetcore.version import Version
from fleetcore.wire import (
    Event,
    EventBatch,
    EventKind,
    Health,
    Heartbeat,
    RegisterRequest,
    RegisterResponse,
    RoleStatus,
    UpdateState,
)
from overlord import migrate
from overlord.app import OverlordApp, create_app
from overlord.auth import service as auth_service
from overlord.auth.models import KeyRole
from overlord.context import AppContext
from overlord.db import make_engine, make_sessionmaker, unit_of_work
from overlord.devices import service as devices_service
from overlord.models import Base
from overlord.settings import Settings
from simulator.site import scratch_database
from tests.overlord.tufrepo import Repo, make_repo


@pytest.fixture(scope="session")
def pg_database(pg_url: str) -> Iterator[str]:
    """A fresh database for this test session on the shared server, dropped afterwards."""
    with scratch_database(pg_url, "overlord_test") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url


def _truncate(engine: Engine) -> None:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same tests on SQLite (unit tier) and on real PostgreSQL (integration tier)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'overlord.db'}"
        migrate.upgrade(make_engine(url))
        yield url
        return
    url = request.getfixturevalue("pg_database")
    engine = make_engine(url)
    _truncate(engine)
    engine.dispose()
    yield url


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = make_repo(tmp_path / "tuf")
    repo.add_os("1.0.0")
    repo.add_os("1.1.0")
    repo.add_role("camera", "2.0.0")
    return repo


def settings_for(url: str, repo: Repo, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": url,
        "repo_dir": repo.path,
        "keys_dir": repo.keydir,
        "run_scheduler": False,
        "cache_ttl_s": 0,
        "device_rate_per_s": 1000,
        "device_rate_burst": 1000,
        "anonymous_rate_per_s": 1000,
        "anonymous_rate_burst": 1000,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@dataclass
class Overlord:
    client: TestClient
    settings: Settings
    admin: str
    enrollment: str
    repo: Repo

    @property
    def app(self) -> OverlordApp:
        app = self.client.app
        assert isinstance(app, OverlordApp)
        return app

    @property
    def ctx(self) -> AppContext:
        ctx: AppContext = self.app.state.ctx
        return ctx

    def token(self, role: KeyRole) -> str:
        return create_token(self.settings.database_url, role)

    def as_admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}

    def enroll(
        self, serial: str | None = None, *, hostname: str = "pi", version: str = "1.0.0"
    ) -> tuple[str, dict[str, str]]:
        request = RegisterRequest.model_validate(
            {
                "enrollment_token": self.enrollment,
                "hostname": hostname,
                "hardware": "pi4",
                "serial": serial,
                "image_version": version,
                "booted_slot": "a",
            }
        )
        resp = self.client.post("/api/v1/devices/register", json=request.model_dump(mode="json"))
        assert resp.status_code == 201, resp.text
        body = RegisterResponse.model_validate(resp.json())
        return body.device_id, {"Authorization": f"Bearer {body.device_token}"}


def create_token(url: str, role: KeyRole) -> str:
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            _key, token = auth_service.create_key(session, role=role, name=f"test {role.value}")
        return token
    finally:
        engine.dispose()


def register_device(url: str, *, serial: str, hardware: Hardware = Hardware.PI4) -> str:
    """Enrol one device straight into the database at ``url``; returns its id."""
    request = RegisterRequest(
        enrollment_token=create_token(url, KeyRole.ENROLLMENT),
        hostname=serial.lower(),
        hardware=hardware,
        serial=serial,
        image_version=Version("1.0.0"),
        booted_slot=Slot.A,
    )
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            return devices_service.register(session, request=request).device_id
    finally:
        engine.dispose()


def make_overlord(url: str, repo: Repo, **overrides: object) -> Overlord:
    settings = settings_for(url, repo, **overrides)
    client = TestClient(create_app(settings))
    return Overlord(
        client=client,
        settings=settings,
        admin=create_token(url, KeyRole.ADMIN),
        enrollment=create_token(url, KeyRole.ENROLLMENT),
        repo=repo,
    )


@pytest.fixture
def overlord(database_url: str, repo: Repo) -> Iterator[Overlord]:
    ov = make_overlord(database_url, repo)
    with ov.client:
        yield ov


def heartbeat(
    version: str = "1.0.0",
    *,
    state: UpdateState = UpdateState.IDLE,
    roles: list[RoleStatus] | None = None,
) -> dict[str, object]:
    return Heartbeat(
        image_version=version,  # type: ignore[arg-type]
        booted_slot=Slot.A,
        committed_slot=Slot.A,
        update_state=state,
        roles=roles or [],
        health=Health.HEALTHY,
        free_data_bytes=1 << 30,
        uptime_s=12.5,
    ).model_dump(mode="json")


def events(*items: tuple[int, EventKind, str | None, str | None]) -> dict[str, object]:
    """An EventBatch of (seq, kind, version, reason)."""
    return EventBatch(
        events=[
            Event(
                seq=seq,
                time=datetime.now(UTC),
                kind=kind,
                version=v,  # type: ignore[arg-type]
                reason=reason,
                message=f"{kind.value} message",
            )
            for seq, kind, v, reason in items
        ]
    ).model_dump(mode="json")
