"""Remote shells on the Overlord (ADR 0074, shell slice), through its ASGI app on SQLite and
PostgreSQL: keystrokes and resizes reach the device, output and the exit status reach the
operator, the session is recorded in asciicast v2 and the recording matches what was typed
and printed; only admins read it (audited); more than one shell only where configuration
allows; a recording past its size limit ends the session; old recordings are pruned."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from overlord.audit.models import AuditAction, AuditEntry
from overlord.auth.models import KeyRole
from overlord.db import unit_of_work, utcnow
from overlord.remote import asciicast, frames, recordings
from overlord.remote.models import RecordingPiece, RemoteSession
from tests.overlord.conftest import Overlord, make_overlord
from tests.overlord.test_remote_sessions import _bearer, _open, _set
from tests.overlord.test_remote_ws import _join, _state
from tests.overlord.tufrepo import Repo

TYPED = [b"ec", b"ho h\xc3", b"\xa9llo\r", b"\x03"]  # an e-acute split across two frames
PRINTED = [b"$ ", b"echo h\xc3\xa9llo\r\n", b"h\xc3\xa9llo\r\n", b"$ ^C"]


def _open_shell(overlord: Overlord, device_id: str) -> str:
    _set(overlord, f"devices/{device_id}", "FLEET_REMOTE_SHELL", "1")
    answer = _open(overlord, device_id, kind="shell")
    assert answer.status_code == 201, answer.text
    session_id: str = answer.json()["id"]
    return session_id


def _recording(overlord: Overlord, session_id: str, token: str | None = None):
    return overlord.client.get(
        f"/api/v1/remote-sessions/{session_id}/recording",
        headers=_bearer(token) if token else overlord.as_admin(),
    )


def test_a_shell_relays_both_ways_and_the_recording_matches(overlord: Overlord):
    device_id, device_auth = overlord.enroll("SHELL1")
    session_id = _open_shell(overlord, device_id)
    with _join(overlord, device_id, session_id, device_auth) as device:
        device.send_text(frames.text("hello", session=session_id, version="test"))
        with overlord.client.websocket_connect(
            f"/api/v1/remote/{session_id}/attach", headers=overlord.as_admin()
        ) as operator:
            operator.send_text(frames.text("resize", cols=100, rows=30))
            assert json.loads(device.receive_text()) == {"type": "resize", "cols": 100, "rows": 30}
            device.send_bytes(PRINTED[0])
            assert operator.receive_bytes() == PRINTED[0]
            for keys in TYPED:
                operator.send_bytes(keys)
                assert device.receive_bytes() == keys
            for output in PRINTED[1:]:
                device.send_bytes(output)
                assert operator.receive_bytes() == output
            device.send_text(frames.text("exit", status=130))
            assert json.loads(operator.receive_text()) == {"type": "exit", "status": 130}
            device.send_text(frames.text("close", reason="the shell exited with status 130"))
            assert json.loads(operator.receive_text())["type"] == "close"
    assert _state(overlord, session_id)["end_detail"] == "the shell exited with status 130"

    answer = _recording(overlord, session_id)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == asciicast.MEDIA_TYPE
    header, events = asciicast.load(answer.text)
    assert (header["width"], header["height"]) == (80, 24)
    assert device_id in header["title"]
    codes = [code for _at, code, _data in events]
    assert codes[0] == "r" and events[0][2] == "100x30"
    typed = "".join(data for _at, code, data in events if code == "i")
    printed = "".join(data for _at, code, data in events if code == "o")
    assert typed == b"".join(TYPED).decode()
    assert printed == b"".join(PRINTED).decode()
    with unit_of_work(overlord.ctx.sessions) as session:
        query = select(AuditEntry.action).where(AuditEntry.object_id == device_id)
        assert AuditAction.REMOTE_RECORDING in set(session.scalars(query))


def test_only_admins_read_recordings_and_only_shells_have_one(overlord: Overlord):
    device_id, _auth = overlord.enroll("SHELL2")
    session_id = _open_shell(overlord, device_id)
    operator = overlord.token(KeyRole.OPERATOR)
    assert _recording(overlord, session_id, operator).status_code == 403
    never_joined = _recording(overlord, session_id)
    assert never_joined.status_code == 404
    assert "never joined" in never_joined.json()["detail"]
    logs = _open(overlord, device_id, kind="logs").json()["id"]
    assert "only shells are recorded" in _recording(overlord, logs).json()["detail"]
    assert _recording(overlord, "x" * 22).status_code == 404


def test_a_second_shell_only_where_configuration_allows_it(overlord: Overlord):
    device_id, _auth = overlord.enroll("SHELL3")
    _open_shell(overlord, device_id)
    assert _open(overlord, device_id, kind="shell").status_code == 409
    _set(overlord, f"devices/{device_id}", "FLEET_REMOTE_SHELLS", "2")
    assert _open(overlord, device_id, kind="shell").status_code == 201
    second = _open(overlord, device_id, kind="shell")
    assert second.status_code == 409
    assert "already has 2 open shell" in second.json()["detail"]


def test_an_exit_status_out_of_range_ends_the_session_with_error(overlord: Overlord):
    device_id, device_auth = overlord.enroll("SHELL4")
    session_id = _open_shell(overlord, device_id)
    with _join(overlord, device_id, session_id, device_auth) as device:
        device.send_text(frames.text("exit", status=256))
        assert json.loads(device.receive_text()) == {
            "type": "error",
            "reason": "exit status must be an integer in 0..255",
        }
    assert _state(overlord, session_id)["end_reason"] == "error"


def test_a_recording_past_its_limit_ends_the_session(database_url: str, repo: Repo):
    overlord = make_overlord(database_url, repo, remote_recording_max_bytes=64 << 10)
    with overlord.client:
        device_id, device_auth = overlord.enroll("SHELL5")
        session_id = _open_shell(overlord, device_id)
        with _join(overlord, device_id, session_id, device_auth) as device:
            device.send_bytes(b"x" * (40 << 10))
            device.send_bytes(b"y" * (40 << 10))
            answer = json.loads(device.receive_text())
        assert answer == {
            "type": "error",
            "reason": f"the recording reached its limit of {64 << 10} bytes",
        }
        ended = _state(overlord, session_id)
        assert ended["end_reason"] == "error"
        # What was recorded before the limit is kept.
        _header, events = asciicast.load(_recording(overlord, session_id).text)
        assert [data[:1] for _at, _code, data in events] == ["x"]


def test_recordings_are_pruned_after_their_retention(overlord: Overlord):
    device_id, device_auth = overlord.enroll("SHELL6")
    old, recent = _open_shell(overlord, device_id), None
    with _join(overlord, device_id, old, device_auth) as device:
        device.send_bytes(b"old output")
        device.send_text(frames.text("close", reason="done"))
        device.receive_text()
    recent = _open(overlord, device_id, kind="shell").json()["id"]
    with _join(overlord, device_id, recent, device_auth) as device:
        device.send_text(frames.text("close", reason="done"))
        device.receive_text()
    with unit_of_work(overlord.ctx.sessions) as session:
        row = session.get(RemoteSession, old)
        assert row is not None
        row.ended_at = utcnow() - timedelta(days=31)
    with unit_of_work(overlord.ctx.sessions) as session:
        assert recordings.prune(session, retention_days=30) >= 1
    with unit_of_work(overlord.ctx.sessions) as session:
        kept = set(session.scalars(select(RecordingPiece.session_id)))
    assert kept == {recent}
    assert _recording(overlord, old).status_code == 404


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty recording"),
        ("[]\n", "not an asciicast v2 header"),
        ('{"version": 2, "width": 0, "height": 24}\n', "width is not a positive integer"),
        ('{"version": 2, "width": 80, "height": 24}\n[1, "x", ""]\n', "line 2 is not"),
        ('{"version": 2, "width": 80, "height": 24}\n[2, "o", "a"]\n[1, "o", "b"]\n', "back in"),
    ],
)
def test_a_malformed_recording_is_one_clear_error(text: str, problem: str):
    with pytest.raises(asciicast.CastError, match=problem):
        asciicast.load(text)
