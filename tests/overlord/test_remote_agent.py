"""The agent's join (ADR 0074) against a real ``overlord serve`` on PostgreSQL, with a fake
``journalctl`` on PATH: the device's thread serves the journal tail to an attached operator
and ends when the operator closes; a device whose ``fleet.yaml`` forbids log tails sends
``close`` with its reason and the session ends ``device``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from fleetcore.firstboot import RemoteAccess
from fleetcore.websocket import WebSocket
from fleetcore.wire import DesiredRemote
from overlord.auth.models import KeyRole
from overlord.remote import frames
from tests.overlord.conftest import create_token
from tests.overlord.servers import overlord_process
from tests.overlord.test_device_rekey import _enrol
from tests.overlord.test_remote_replicas import _ended, _open
from tests.overlord.test_replicas import _env, _register, pg_repo  # noqa: F401 (fixture)
from tests.overlord.tufrepo import Repo
from tests.updater.test_remote_journal import FIXTURES, fake_journal  # noqa: F401
from updater.overlord import Identity, OverlordClient
from updater.remote.follow import RemoteFollower
from updater.remote.journal import entry_of

pytestmark = pytest.mark.integration
JOURNAL = FIXTURES / "good.jsonl"


def _follower(base: str, device_id: str, auth: dict[str, str], access: RemoteAccess, **kw):
    client = OverlordClient(base, timeout=10)
    client.identity = Identity(device_id, auth["Authorization"].removeprefix("Bearer "))
    return client, RemoteFollower(client, access, version=lambda: "1.0.0", **kw)


def _until(predicate, what: str) -> None:
    for _ in range(300):
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_the_agent_serves_the_journal_and_honours_the_veto(
    pg_repo: tuple[str, Repo],  # noqa: F811
    tmp_path: Path,
    fake_journal: Path,  # noqa: F811
):
    url, repo = pg_repo
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    env = _env(url, repo, OVERLORD_RUN_SCHEDULER="false")
    with overlord_process(env, log=tmp_path / "s.log") as base:
        device_id, auth = _register(base, enrollment, "AGENT1")
        session_id = _open(base, device_id, admin)
        operator = WebSocket(base + f"/api/v1/remote/{session_id}/attach", admin)
        client, follower = _follower(base, device_id, auth, RemoteAccess())
        desired, _etag = client.desired_state(None)
        assert desired is not None and desired.remote is not None
        follower.follow(desired.remote)
        assert follower.serving
        expected = [entry_of(line) for line in JOURNAL.read_bytes().splitlines(keepends=True)]
        assert [json.loads(operator.receive(30) or b"") for _ in expected] == expected
        operator.send_text(frames.text("close", reason="seen enough"))
        _until(lambda: not follower.serving, "the agent's session thread to end")
        assert _ended(base, session_id, admin)["end_reason"] == "operator"
        assert "--follow" in json.loads(fake_journal.read_text())["argv"]

        # fleet.yaml says no: the device joins only to refuse, with its reason.
        session_id = _open(base, device_id, admin)
        client, follower = _follower(base, device_id, auth, RemoteAccess(logs=False))
        desired, _etag = client.desired_state(None)
        assert desired is not None and desired.remote is not None
        follower.follow(desired.remote)
        _until(lambda: _ended(base, session_id, admin)["state"] == "ended", "the refusal")
        ended = _ended(base, session_id, admin)
        assert ended["end_reason"] == "device"
        assert "fleet.yaml forbids logs" in ended["end_detail"]
        follower.follow(None)
        assert not follower.serving
        assert httpx.get(f"{base}/health").status_code == 200


def test_a_key_bound_device_joins_with_a_signed_upgrade(
    pg_repo: tuple[str, Repo],  # noqa: F811
    tmp_path: Path,
):
    url, repo = pg_repo
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    env = _env(url, repo, OVERLORD_RUN_SCHEDULER="false")
    with overlord_process(env, log=tmp_path / "s.log") as base:
        client = OverlordClient(base, timeout=10)
        device_id = _enrol(client, url, tmp_path / "device-key.pem")
        session_id = _open(base, device_id, admin)
        # Without its key the token alone is refused: the session stays pending.
        unsigned = OverlordClient(base, timeout=10)
        unsigned.identity = client.identity
        refused = RemoteFollower(unsigned, RemoteAccess(logs=False), version=lambda: "1.0.0")
        refused.follow(DesiredRemote(session=session_id, kind="logs"))
        _until(lambda: not refused.serving, "the unsigned join to be refused")
        assert _ended(base, session_id, admin)["state"] == "pending"
        signed = RemoteFollower(client, RemoteAccess(logs=False), version=lambda: "1.0.0")
        signed.follow(DesiredRemote(session=session_id, kind="logs"))
        _until(lambda: _ended(base, session_id, admin)["state"] == "ended", "the signed join")
        assert _ended(base, session_id, admin)["end_reason"] == "device"
