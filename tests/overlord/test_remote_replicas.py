"""A remote session across two real ``overlord serve`` replicas on one PostgreSQL (ADR 0074):
the device's WebSocket on one, the operator's on the other; lines (one bigger than a relay
piece) arrive whole and in order, a close on either side ends the session on both, and a
second operator is refused whichever replica it attaches to."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from fleetcore.websocket import Closed, WebSocket
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from overlord.remote import frames
from overlord.remote.claim import lock_key
from tests.overlord.conftest import create_token
from tests.overlord.servers import overlord_process
from tests.overlord.test_replicas import _env, _register, pg_repo  # noqa: F401 (fixture)
from tests.overlord.tufrepo import Repo

pytestmark = pytest.mark.integration
# A bigint advisory lock shows in pg_locks as its high and low 32 bits.
ADVISORY = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :high "
    "AND objid = :low AND objsubid = 1"
)


def _claims(url: str, session_id: str) -> int:
    """How many advisory locks hold the session's operator claim (0 or 1)."""
    unsigned = lock_key(session_id) % (1 << 64)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            halves = {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}
            return int(conn.execute(text(ADVISORY), halves).scalar() or 0)
    finally:
        engine.dispose()


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


@dataclass(frozen=True)
class Replicas:
    a: str
    b: str
    database: str
    enrollment: str
    admin: dict[str, str]


@pytest.fixture
def replicas(pg_repo: tuple[str, Repo], tmp_path: Path) -> Iterator[Replicas]:  # noqa: F811
    """Two ``overlord serve`` processes on one PostgreSQL, an enrollment and an admin token."""
    url, repo = pg_repo
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    env = _env(url, repo, OVERLORD_RUN_SCHEDULER="false")
    with (
        overlord_process(env, log=tmp_path / "a.log") as a,
        overlord_process(env, log=tmp_path / "b.log") as b,
    ):
        yield Replicas(a, b, url, enrollment, admin)


def test_a_session_spans_two_replicas(replicas: Replicas):
    a, b, enrollment, admin = replicas.a, replicas.b, replicas.enrollment, replicas.admin
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


def test_a_second_operator_is_refused_on_another_replica(replicas: Replicas):
    a, b, enrollment, admin = replicas.a, replicas.b, replicas.enrollment, replicas.admin
    url = replicas.database
    device_id, device_auth = _register(a, enrollment, "ONEOP1")
    session_id = _open(a, device_id, admin)
    device = WebSocket(a + f"/api/v1/devices/{device_id}/remote/{session_id}", device_auth)
    first = WebSocket(b + f"/api/v1/remote/{session_id}/attach", admin)
    second = WebSocket(a + f"/api/v1/remote/{session_id}/attach", admin)
    refused = json.loads(str(second.receive(30)))
    assert refused == {"type": "error", "reason": "the session's operator is already connected"}
    with pytest.raises(Closed):
        second.receive(30)
    device.send_bytes(b'{"MESSAGE": "still here"}')
    assert first.receive(30) == b'{"MESSAGE": "still here"}'
    assert _claims(url, session_id) == 1
    # Once the first operator's socket is gone, its replica has let the claim go.
    first.send_text(frames.text("close", reason="seen enough"))
    assert json.loads(str(first.receive(30)))["type"] == "close"
    with pytest.raises(Closed):
        first.receive(30)
    for _ in range(100):
        if not _claims(url, session_id):
            break
        time.sleep(0.1)
    assert _claims(url, session_id) == 0
    for socket in (device, first, second):
        socket.close()
