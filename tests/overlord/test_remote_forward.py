"""Port forwarding on the Overlord (ADR 0074, forwarding slice), through its ASGI app on
SQLite and PostgreSQL: off by default and admin only; the device's ``ready`` and every
stream's frames are relayed both ways, each stream's open, close and error is audited (its
bytes are not); a stream frame that breaks the rules, or comes in another kind of session,
ends the session with ``error``."""

from __future__ import annotations

import json

import pytest
from fastapi import WebSocketDisconnect
from sqlalchemy import select

from fleetcore import streams
from overlord.audit.models import AuditAction, AuditEntry
from overlord.auth.models import KeyRole
from overlord.db import unit_of_work
from overlord.remote import frames
from overlord.remote.models import EndReason
from overlord.remote.relay import Side
from overlord.remote.ws import Ended, _outcome
from tests.overlord.conftest import Overlord
from tests.overlord.test_remote_sessions import _open, _set
from tests.overlord.test_remote_shell import _open_shell
from tests.overlord.test_remote_ws import _join, _state


def _open_forward(overlord: Overlord, device_id: str, port: int = 8080) -> str:
    _set(overlord, f"devices/{device_id}", "FLEET_REMOTE_FORWARD", "1")
    answer = _open(overlord, device_id, kind="forward", port=port)
    assert answer.status_code == 201, answer.text
    session_id: str = answer.json()["id"]
    return session_id


def _stream_audit(overlord: Overlord, device_id: str) -> list[dict[str, object]]:
    with unit_of_work(overlord.ctx.sessions) as session:
        query = select(AuditEntry).where(
            AuditEntry.object_id == device_id, AuditEntry.action == AuditAction.REMOTE_STREAM
        )
        return [
            {"actor": e.actor_name, **(e.after or {})}
            for e in session.scalars(query.order_by(AuditEntry.id))
        ]


def test_forwarding_is_off_by_default_and_for_admins_only(overlord: Overlord):
    device_id, _auth = overlord.enroll("FWD0")
    off = _open(overlord, device_id, kind="forward", port=8080)
    assert off.status_code == 403
    assert "set FLEET_REMOTE_FORWARD=1" in off.json()["detail"]
    _set(overlord, "fleet", "FLEET_REMOTE_FORWARD", "1")
    viewer = _open(overlord, device_id, overlord.token(KeyRole.VIEWER), kind="forward", port=80)
    assert viewer.status_code == 403
    assert "needs the admin role" in viewer.json()["detail"]
    operator = _open(overlord, device_id, overlord.token(KeyRole.OPERATOR), kind="forward", port=1)
    assert operator.status_code == 403
    assert _open(overlord, device_id, kind="forward", port=65535).status_code == 201


def test_streams_are_relayed_both_ways_and_each_open_and_close_is_audited(overlord: Overlord):
    device_id, device_auth = overlord.enroll("FWD1")
    session_id = _open_forward(overlord, device_id)
    attach = f"/api/v1/remote/{session_id}/attach"
    with (  # the operator attached first: the device's ready reaches it
        overlord.client.websocket_connect(attach, headers=overlord.as_admin()) as operator,
        _join(overlord, device_id, session_id, device_auth) as device,
    ):
        device.send_text(frames.text("hello", session=session_id, version="test"))
        device.send_text(streams.ready())
        assert json.loads(operator.receive_text()) == {"type": "ready"}
        operator.send_text(streams.control(streams.OPEN, 1))
        assert device.receive_text() == streams.control(streams.OPEN, 1)
        operator.send_bytes(streams.pack(1, b"GET / HTTP/1.1\r\n\r\n"))
        assert device.receive_bytes() == streams.pack(1, b"GET / HTTP/1.1\r\n\r\n")
        device.send_bytes(streams.pack(1, b"HTTP/1.1 200 OK\r\n\r\n"))
        assert operator.receive_bytes() == streams.pack(1, b"HTTP/1.1 200 OK\r\n\r\n")
        operator.send_text(streams.control(streams.OPEN, 2))
        assert device.receive_text() == streams.control(streams.OPEN, 2)
        device.send_text(streams.control(streams.ERROR, 2, "connection refused"))
        assert operator.receive_text() == streams.control(streams.ERROR, 2, "connection refused")
        device.send_text(streams.control(streams.CLOSE, 1))
        assert operator.receive_text() == streams.control(streams.CLOSE, 1)
        assert _state(overlord, session_id)["state"] == "active"
        operator.send_text(frames.text("close", reason="done"))
        assert json.loads(device.receive_text())["reason"] == "done"
    trail = _stream_audit(overlord, device_id)
    assert [(e["stream"], e["event"], e["by"]) for e in trail] == [
        (1, streams.OPEN, "operator"),
        (2, streams.OPEN, "operator"),
        (2, streams.ERROR, "device"),
        (1, streams.CLOSE, "device"),
    ]
    assert trail[2]["reason"] == "connection refused"
    assert {e["actor"] for e in trail[:2]} != {"overlord"}  # the admin who opened them
    assert all(e["session"] == session_id for e in trail)


def test_an_operator_who_attaches_after_the_device_joined_is_told_it_is_ready(
    overlord: Overlord,
):
    device_id, device_auth = overlord.enroll("FWD4")
    session_id = _open_forward(overlord, device_id)
    with _join(overlord, device_id, session_id, device_auth) as device:
        device.send_text(streams.ready())  # nobody attached yet: it goes nowhere
        with overlord.client.websocket_connect(
            f"/api/v1/remote/{session_id}/attach", headers=overlord.as_admin()
        ) as operator:
            assert json.loads(operator.receive_text()) == {"type": "ready"}
            operator.send_text(streams.control(streams.OPEN, 1))
            assert device.receive_text() == streams.control(streams.OPEN, 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"type": streams.OPEN, "stream": 0},
        {"type": streams.OPEN, "stream": "1"},
        {"type": streams.CLOSE, "stream": 2**31},
        {"type": "ready"},
    ],
)
def test_a_stream_frame_that_breaks_the_rules_ends_the_session(
    overlord: Overlord, bad: dict[str, object]
):
    device_id, device_auth = overlord.enroll("FWD2")
    session_id = _open_forward(overlord, device_id)
    with _join(overlord, device_id, session_id, device_auth) as device:
        with overlord.client.websocket_connect(
            f"/api/v1/remote/{session_id}/attach", headers=overlord.as_admin()
        ) as operator:
            assert json.loads(operator.receive_text()) == {"type": "ready"}  # joined first
            operator.send_text(json.dumps(bad))
            assert json.loads(operator.receive_text())["type"] == "error"
        assert json.loads(device.receive_text())["type"] == "error"
    assert _state(overlord, session_id)["end_reason"] == "error"


def test_stream_frames_belong_to_forwards_only(overlord: Overlord):
    device_id, device_auth = overlord.enroll("FWD3")
    session_id = _open_shell(overlord, device_id)
    with _join(overlord, device_id, session_id, device_auth) as device:
        device.send_text(streams.control(streams.CLOSE, 1))
        assert json.loads(device.receive_text())["type"] == "error"
    assert _state(overlord, session_id)["end_reason"] == "error"


def test_a_send_racing_the_peers_disconnect_still_ends_the_session():
    disconnect = WebSocketDisconnect(code=1006)
    ended = Ended(EndReason.OPERATOR, "the operator left")
    assert _outcome(Side.OPERATOR, [disconnect, ended]) is ended
    gone = _outcome(Side.OPERATOR, [disconnect, None])
    assert isinstance(gone, Ended)
    assert (gone.reason, gone.detail) == (EndReason.OPERATOR, "operator disconnected")
    assert _outcome(Side.DEVICE, [None, None]) is None
