"""The updater's own Overlord client (updater/overlord.py) against a real Overlord process."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleetcore import httpsig
from fleetcore.wire import Event, EventBatch, EventKind, Heartbeat, RegisterRequest
from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from tests.overlord.conftest import create_token, heartbeat
from tests.overlord.servers import overlord_process
from tests.overlord.tufrepo import make_repo
from updater import devicekey
from updater.overlord import OverlordClient, OverlordRejected


def _serve_env(tmp_path: Path) -> tuple[str, dict[str, str]]:
    repo = make_repo(tmp_path / "tuf")
    url = f"sqlite:///{tmp_path / 'client.db'}"
    migrate.upgrade(make_engine(url))
    return url, {
        "OVERLORD_DATABASE_URL": url,
        "OVERLORD_REPO_DIR": str(repo.path),
        "OVERLORD_KEYS_DIR": str(repo.keydir),
        "OVERLORD_RUN_SCHEDULER": "false",
    }


def _register(client: OverlordClient, url: str, serial: str, public_key: str | None = None):
    return client.register(
        RegisterRequest.model_validate(
            {
                "enrollment_token": create_token(url, KeyRole.ENROLLMENT),
                "hostname": "pi-client",
                "hardware": "pi5",
                "serial": serial,
                "image_version": "1.0.0",
                "booted_slot": "b",
                "public_key": public_key,
            }
        )
    )


def test_the_updater_client_speaks_the_servers_api(tmp_path: Path):
    url, env = _serve_env(tmp_path)
    with overlord_process(env, log=tmp_path / "server.log") as base:
        client = OverlordClient(base, timeout=10)
        try:
            identity = _register(client, url, "UC1")
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


def test_a_key_bound_client_signs_and_survives_a_bad_clock(tmp_path: Path):
    """ADR 0075 against `overlord serve`: signed requests pass, the bare token does not, and
    a clock a day behind costs one refused request (the Date header sets it right)."""
    url, env = _serve_env(tmp_path)
    with overlord_process(env, log=tmp_path / "server.log") as base:
        client = OverlordClient(base, timeout=10)
        thief = OverlordClient(base, timeout=10)
        try:
            client.key = devicekey.create(tmp_path / "device-key.pem")
            public = base64.b64encode(httpsig.public_bytes(client.key)).decode()
            identity = _register(client, url, "UC2", public)
            state, etag = client.desired_state(None)
            assert state is not None and etag
            client.heartbeat(Heartbeat.model_validate(heartbeat("1.0.0")))
            thief.identity = identity  # the token copied, the key not
            with pytest.raises(OverlordRejected) as refused:
                thief.heartbeat(Heartbeat.model_validate(heartbeat("1.0.0")))
            assert refused.value.status == 401 and identity.device_token not in str(refused.value)
            client.clock.offset_s = -86_400.0  # booted with yesterday's saved clock
            with pytest.raises(OverlordRejected, match="from the Overlord's clock"):
                client.desired_state(None)
            assert abs(client.clock.offset_s) < 5
            assert client.desired_state(etag) == (None, etag)
        finally:
            client.close()
            thief.close()
