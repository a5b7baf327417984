"""A remote session across two real ``overlord serve`` replicas on one PostgreSQL (ADR 0074):
the device's WebSocket on one, the operator's on the other; lines (one bigger than a relay
piece) arrive whole and in order, and a close on either side ends the session on both."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from fleetcore.websocket import Closed, WebSocket
from overlord.auth.models import KeyRole
from overlord.remote import frames
from tests.overlord.conftest import create_token
from tests.overlord.servers import overlord_process
from tests.overlord.test_replicas import _env, _register, pg_repo  # noqa: F401 (fixture)
from tests.overlord.tufrepo import Repo

pytestmark = pytest.mark.integration


def _open(base: str, device_id: str, admin: dict[str, str]) -> str:
    opened = httpx.post(
        f"{base}/api/v1/devices/{device_id}/remote-sessions", json={"kind": "logs"}, headers=admin
    )
    assert opened.status_code == 201, opened.text
    session_id: str = opened.json()["id"]
    return session_id


def _ended(base: str, session_id: str, admin: dict[str, str]) -> dict[str, str]:
    body: dict[str, str] = httpx.get(
        f"{base}/api/v1/remote-sessions/{session_id}", headers=admin
    ).json()
    return body


def test_a_session_spans_two_replicas(pg_repo: tuple[str, Repo], tmp_path: Path):  # noqa: F811
    url, repo = pg_repo
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    env = _env(url, repo, OVERLORD_RUN_SCHEDULER="false")
    with (
        overlord_process(env, log=tmp_path / "a.log") as a,
        overlord_process(env, log=tmp_path / "b.log") as b,
    ):
        device_id, device_auth = _register(a, enrollment, "RELAY1")
        session_id = _open(a, device_id, admin)
        device = WebSocket(a + f"/api/v1/devices/{device_id}/remote/{session_id}", device_auth)
        device.send_text(frames.text("hello", session=session_id, version="test"))
        operator = WebSocket(b + f"/api/v1/remote/{session_id}/attach", admin)
        lines = [json.dumps({"MESSAGE": f"line {n}"}).encode() for n in range(40)]
        lines.insert(7, json.dumps({"MESSAGE": "x" * 20000}).encode())  # five relay pieces
        for line in lines:
            device.send_bytes(line)
        assert [operator.receive(30) for _ in lines] == lines
        device.send_text(frames.text("close", reason="owner said no"))
        assert json.loads(str(operator.receive(30))) == {"type": "close", "reason": "owner said no"}
        with pytest.raises(Closed):
            operator.receive(30)
        device.close()
        ended = _ended(b, session_id, admin)
        assert (ended["state"], ended["end_reason"]) == ("ended", "device")

        # The operator's close on replica b ends the device's socket on replica a.
        session_id = _open(b, device_id, admin)
        device = WebSocket(a + f"/api/v1/devices/{device_id}/remote/{session_id}", device_auth)
        operator = WebSocket(b + f"/api/v1/remote/{session_id}/attach", admin)
        operator.send_text(frames.text("close", reason="seen enough"))
        assert json.loads(str(device.receive(30))) == {"type": "close", "reason": "seen enough"}
        with pytest.raises(Closed):
            device.receive(30)
        operator.close()
        ended = _ended(a, session_id, admin)
        assert (ended["state"], ended["end_reason"]) == ("ended", "operator")
