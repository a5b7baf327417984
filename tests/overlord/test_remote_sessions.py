"""The remote-session broker (ADR 0074, first slice): roles per kind, the configuration
policy (device over group over fleet), the one-shell rule, who may end a session, the
timeouts, and an audit entry for every open and end. Each test runs on SQLite and on
PostgreSQL through the Overlord's HTTP API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from overlord.audit.models import AuditAction, AuditEntry
from overlord.auth.models import KeyRole
from overlord.db import unit_of_work, utcnow
from overlord.remote import service
from overlord.remote.models import EndReason, RemoteSession, SessionState
from overlord.scheduler import Scheduler
from tests.overlord.conftest import Overlord

LIMITS = service.Limits(idle_timeout_s=300, max_length_s=3600, join_timeout_s=60)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _open(
    overlord: Overlord, device_id: str, token: str | None = None, **body: Any
) -> httpx.Response:
    return overlord.client.post(
        f"/api/v1/devices/{device_id}/remote-sessions",
        json=body,
        headers=_bearer(token) if token else overlord.as_admin(),
    )


def _set(overlord: Overlord, level: str, key: str, value: str) -> None:
    answer = overlord.client.put(
        f"/api/v1/config/{level}/{key}", json={"value": value}, headers=overlord.as_admin()
    )
    assert answer.status_code == 200, answer.text


def _audit(overlord: Overlord, device_id: str) -> list[AuditEntry]:
    with unit_of_work(overlord.ctx.sessions) as session:
        query = select(AuditEntry).where(
            AuditEntry.object_id == device_id, AuditEntry.action.like("remote.%")
        )
        return list(session.scalars(query.order_by(AuditEntry.id)))


def test_a_viewer_opens_a_log_tail_and_ends_it_and_both_are_audited(overlord: Overlord):
    device_id, _auth = overlord.enroll("REMOTE1")
    viewer = overlord.token(KeyRole.VIEWER)
    answer = _open(overlord, device_id, viewer, kind="logs", unit="nginx.service", priority="err")
    assert answer.status_code == 201, answer.text
    opened = answer.json()
    assert opened["state"] == "pending"
    assert opened["params"] == {"unit": "nginx.service", "priority": "err"}

    listed = overlord.client.get(
        f"/api/v1/devices/{device_id}/remote-sessions?open=true", headers=_bearer(viewer)
    )
    assert [s["id"] for s in listed.json()] == [opened["id"]]

    ended = overlord.client.delete(
        f"/api/v1/remote-sessions/{opened['id']}", headers=_bearer(viewer)
    )
    assert ended.status_code == 200, ended.text
    assert ended.json()["state"] == "ended"
    assert ended.json()["end_reason"] == "operator"
    again = overlord.client.delete(
        f"/api/v1/remote-sessions/{opened['id']}", headers=_bearer(viewer)
    )
    assert again.status_code == 409
    assert "already ended (operator)" in again.json()["detail"]

    entries = _audit(overlord, device_id)
    assert [e.action for e in entries] == [AuditAction.REMOTE_OPEN, AuditAction.REMOTE_END]
    assert entries[0].after == {
        "session": opened["id"],
        "kind": "logs",
        "unit": "nginx.service",
        "priority": "err",
    }
    assert entries[1].after == {"session": opened["id"], "state": "ended", "reason": "operator"}
    assert entries[1].actor_role == "viewer"


def test_a_viewer_cannot_open_a_shell_and_an_admin_only_where_configuration_allows(
    overlord: Overlord,
):
    device_id, _auth = overlord.enroll("REMOTE2")
    viewer = overlord.token(KeyRole.VIEWER)
    refused = _open(overlord, device_id, viewer, kind="shell")
    assert refused.status_code == 403
    assert "needs the admin role" in refused.json()["detail"]

    off = _open(overlord, device_id, kind="shell")
    assert off.status_code == 403
    assert "set FLEET_REMOTE_SHELL=1" in off.json()["detail"]

    overlord.client.put("/api/v1/groups/lab", json={}, headers=overlord.as_admin())
    overlord.client.patch(
        f"/api/v1/devices/{device_id}", json={"group": "lab"}, headers=overlord.as_admin()
    )
    _set(overlord, "groups/lab", "FLEET_REMOTE_SHELL", "1")
    first = _open(overlord, device_id, kind="shell")
    assert first.status_code == 201, first.text
    second = _open(overlord, device_id, kind="shell")
    assert second.status_code == 409
    assert "already has 1 open shell" in second.json()["detail"]

    # The device's own level wins over its group's.
    _set(overlord, f"devices/{device_id}", "FLEET_REMOTE_SHELL", "0")
    overlord.client.delete(
        f"/api/v1/remote-sessions/{first.json()['id']}", headers=overlord.as_admin()
    )
    assert _open(overlord, device_id, kind="shell").status_code == 403


def test_log_tails_are_on_unless_turned_off_fleet_wide(overlord: Overlord):
    device_id, _auth = overlord.enroll("REMOTE3")
    assert _open(overlord, device_id, kind="logs").status_code == 201
    _set(overlord, "fleet", "FLEET_REMOTE_LOGS", "0")
    refused = _open(overlord, device_id, kind="logs")
    assert refused.status_code == 403
    assert "logs sessions are off" in refused.json()["detail"]


def test_only_the_opener_or_an_admin_ends_a_session(overlord: Overlord):
    device_id, _auth = overlord.enroll("REMOTE4")
    opener, other = overlord.token(KeyRole.VIEWER), overlord.token(KeyRole.OPERATOR)
    opened = _open(overlord, device_id, opener, kind="logs").json()
    path = f"/api/v1/remote-sessions/{opened['id']}"
    refused = overlord.client.delete(path, headers=_bearer(other))
    assert refused.status_code == 403
    assert overlord.client.delete(path, headers=overlord.as_admin()).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "shell", "lines": 10},
        {"kind": "logs", "unit": "../etc/passwd"},
        {"kind": "logs", "unit": "-rf"},
        {"kind": "logs", "priority": "loud"},
        {"kind": "logs", "lines": 1001},
        {"kind": "forward"},
        {"kind": "forward", "port": 70000},
        {"kind": "forward", "port": 0},
        {"kind": "telnet"},
        {"kind": "logs", "command": "sh"},
    ],
)
def test_a_malformed_request_is_refused_and_opens_nothing(overlord: Overlord, body: dict[str, Any]):
    device_id, _auth = overlord.enroll("REMOTE5")
    assert _open(overlord, device_id, **body).status_code == 422
    assert _audit(overlord, device_id) == []


def test_unknown_devices_and_sessions_are_404(overlord: Overlord):
    assert _open(overlord, "nosuchdevice", kind="logs").status_code == 404
    missing = overlord.client.get(
        "/api/v1/remote-sessions/AAAAAAAAAAAAAAAAAAAAAA", headers=overlord.as_admin()
    )
    assert missing.status_code == 404
    unauthenticated = overlord.client.get("/api/v1/remote-sessions/AAAAAAAAAAAAAAAAAAAAAA")
    assert unauthenticated.status_code == 401


def test_a_device_token_cannot_open_a_session(overlord: Overlord):
    device_id, auth = overlord.enroll("REMOTE6")
    answer = overlord.client.post(
        f"/api/v1/devices/{device_id}/remote-sessions", json={"kind": "logs"}, headers=auth
    )
    assert answer.status_code == 403


def test_sessions_end_when_never_joined_idle_or_too_long_and_the_end_is_audited(
    overlord: Overlord,
):
    device_id, _auth = overlord.enroll("REMOTE7")
    ids = [_open(overlord, device_id, kind="logs").json()["id"] for _ in range(3)]
    now = utcnow()
    with unit_of_work(overlord.ctx.sessions) as session:
        never, idle, long = (session.get(RemoteSession, i) for i in ids)
        assert never and idle and long
        never.opened_at = now - timedelta(seconds=61)
        for row in (idle, long):
            row.state = SessionState.ACTIVE
            row.joined_at = now - timedelta(seconds=3601)
        idle.joined_at = now - timedelta(seconds=400)
        idle.last_activity_at = now - timedelta(seconds=301)
        long.last_activity_at = now
    with unit_of_work(overlord.ctx.sessions) as session:
        assert service.expire(session, device_id, LIMITS, now=now) == []

    answers = [
        overlord.client.get(f"/api/v1/remote-sessions/{i}", headers=overlord.as_admin()).json()
        for i in ids
    ]
    assert [a["end_reason"] for a in answers] == [
        EndReason.JOIN_TIMEOUT,
        EndReason.IDLE,
        EndReason.EXPIRED,
    ]
    ends = [e for e in _audit(overlord, device_id) if e.action == AuditAction.REMOTE_END]
    assert {e.actor_name for e in ends} == {"overlord"}
    assert len(ends) == 3


def test_a_session_within_its_limits_stays_open(overlord: Overlord):
    device_id, _auth = overlord.enroll("REMOTE8")
    opened = _open(overlord, device_id, kind="logs").json()
    with unit_of_work(overlord.ctx.sessions) as session:
        row = session.get(RemoteSession, opened["id"])
        assert row is not None
        assert service.due(row, LIMITS, row.opened_at + timedelta(seconds=59)) is None
        row.state = SessionState.ACTIVE
        row.joined_at = row.opened_at
        assert service.due(row, LIMITS, row.opened_at + timedelta(seconds=299)) is None


def _desired(
    overlord: Overlord, device_id: str, auth: dict[str, str], etag: str = ""
) -> httpx.Response:
    headers = {**auth, "If-None-Match": etag} if etag else auth
    return overlord.client.get(f"/api/v1/devices/{device_id}/desired-state", headers=headers)


def test_the_desired_state_names_the_open_session_and_its_etag_follows(overlord: Overlord):
    device_id, auth = overlord.enroll("REMOTE9")
    before = _desired(overlord, device_id, auth)
    assert "remote" not in before.json()
    assert _desired(overlord, device_id, auth, before.headers["ETag"]).status_code == 304

    opened = _open(overlord, device_id, kind="logs", unit="ssh.service", lines=20).json()
    named = _desired(overlord, device_id, auth, before.headers["ETag"])
    assert named.status_code == 200
    assert named.json()["remote"] == {
        "session": opened["id"],
        "kind": "logs",
        "unit": "ssh.service",
        "priority": None,
        "lines": 20,
        "port": None,
        "poll_s": 2,
    }
    assert _desired(overlord, device_id, auth, named.headers["ETag"]).status_code == 304

    overlord.client.delete(f"/api/v1/remote-sessions/{opened['id']}", headers=overlord.as_admin())
    after = _desired(overlord, device_id, auth, named.headers["ETag"])
    assert after.status_code == 200
    assert "remote" not in after.json()
    assert after.headers["ETag"] == before.headers["ETag"]


def test_a_pending_session_past_its_join_timeout_is_no_longer_named(overlord: Overlord):
    device_id, _auth = overlord.enroll("REMOTE10")
    opened = _open(overlord, device_id, kind="logs").json()
    with unit_of_work(overlord.ctx.sessions) as session:
        row = session.get(RemoteSession, opened["id"])
        assert row is not None
        row.opened_at = utcnow() - timedelta(seconds=61)
        assert service.named_session(session, device_id, join_timeout_s=60) is None


def test_the_scheduler_ends_sessions_nobody_reads(overlord: Overlord):
    device_id, _auth = overlord.enroll("REMOTE11")
    stale, fresh = (_open(overlord, device_id, kind="logs").json()["id"] for _ in range(2))
    with unit_of_work(overlord.ctx.sessions) as session:
        row = session.get(RemoteSession, stale)
        assert row is not None
        row.opened_at = utcnow() - timedelta(seconds=61)
    assert Scheduler(overlord.ctx).run_once()
    with unit_of_work(overlord.ctx.sessions) as session:
        states = {i: session.get(RemoteSession, i) for i in (stale, fresh)}
        assert {i: (r.state, r.end_reason) for i, r in states.items() if r} == {
            stale: (SessionState.ENDED, EndReason.JOIN_TIMEOUT),
            fresh: (SessionState.PENDING, None),
        }
    ends = [e for e in _audit(overlord, device_id) if e.action == AuditAction.REMOTE_END]
    assert [e.after["session"] for e in ends if e.after] == [stale]
