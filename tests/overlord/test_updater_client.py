"""The updater's own Overlord client (updater/overlord.py) against a real Overlord process."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fleetcore.wire import Event, EventBatch, EventKind, Heartbeat, RegisterRequest
from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from tests.overlord.conftest import create_token, heartbeat
from tests.overlord.servers import overlord_process
from tests.overlord.tufrepo import make_repo
from updater.overlord import OverlordClient


def test_the_updater_client_speaks_the_servers_api(tmp_path: Path):
    repo = make_repo(tmp_path / "tuf")
    url = f"sqlite:///{tmp_path / 'client.db'}"
    migrate.upgrade(make_engine(url))
    env = {
        "OVERLORD_DATABASE_URL": url,
        "OVERLORD_REPO_DIR": str(repo.path),
        "OVERLORD_KEYS_DIR": str(repo.keydir),
        "OVERLORD_RUN_SCHEDULER": "false",
    }
    with overlord_process(env, log=tmp_path / "server.log") as base:
        client = OverlordClient(base, timeout=10)
        try:
            identity = client.register(
                RegisterRequest.model_validate(
                    {
                        "enrollment_token": create_token(url, KeyRole.ENROLLMENT),
                        "hostname": "pi-client",
                        "hardware": "pi5",
                        "serial": "UC1",
                        "image_version": "1.0.0",
                        "booted_slot": "b",
                    }
                )
            )
            state, etag = client.desired_state(None)
            assert state is not None and state.os is None and etag
            assert client.desired_state(etag) == (None, etag)
            client.heartbeat(Heartbeat.model_validate(heartbeat("1.0.0")))
            batch = EventBatch(
                events=[Event(seq=7, time=datetime.now(UTC), kind=EventKind.ENROLLED)]
            )
            assert client.send_events(batch).accepted == 1
            assert client.send_events(batch).accepted == 0
            assert identity.device_id.startswith("dev-")
        finally:
            client.close()
