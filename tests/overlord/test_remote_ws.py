"""The remote-session WebSockets on one replica (ADR 0074, second slice): the device joins
with its own credential, the operator attaches with the kind's role, binary frames are
relayed, hostile frames and another device's token are refused, the device's close ends the
session with its reason. On SQLite and PostgreSQL, through the Overlord's ASGI app."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from overlord.audit.models import AuditAction, AuditEntry
from overlord.db import unit_of_work
from overlord.remote import frames
from overlord.remote.relay import Mailbox
from tests.overlord.conftest import Overlord, make_overlord
from tests.overlord.tufrepo import Repo


def _open_logs(overlord: Overlord, device_id: str) -> str:
    answer = overlord.client.post(
        f"/api/v1/devices/{device_id}/remote-sessions",
        json={"kind": "logs"},
        headers=overlord.as_admin(),
    )
    assert answer.status_code == 201, answer.text
    session_id: str = answer.json()["id"]
    return session_id


def _state(overlord: Overlord, session_id: str) -> dict[str, object]:
    answer = overlord.client.get(
        f"/api/v1/remote-sessions/{session_id}", headers=overlord.as_admin()
    )
    body: dict[str, object] = answer.json()
    return body


def _join(
    overlord: Overlord, device_id: str, session_id: str, auth: dict[str, str]
) -> WebSocketTestSession:
    """The device's WebSocket into the session, with the credential ``auth``."""
    return overlord.client.websocket_connect(
        f"/api/v1/devices/{device_id}/remote/{session_id}", headers=auth
    )


def test_device_lines_reach_the_operator_and_the_device_close_ends_it(overlord: Overlord):
    device_id, device_auth = overlord.enroll("WS1")
    session_id = _open_logs(overlord, device_id)
    with _join(overlord, device_id, session_id, device_auth) as device:
        assert _state(overlord, session_id)["state"] == "active"
        device.send_text(frames.text("hello", session=session_id, version="test"))
        with overlord.client.websocket_connect(
            f"/api/v1/remote/{session_id}/attach", headers=overlord.as_admin()
        ) as operator:
            line = json.dumps({"MESSAGE": "hello from the journal"}).encode()
            device.send_bytes(line)
            assert operator.receive_bytes() == line
            device.send_text(frames.text("dropped", count=3))  # the device's reader lost some
            assert json.loads(operator.receive_text()) == {"type": "dropped", "count": 3}
            device.send_text(frames.text("close", reason="owner said no"))
            assert json.loads(operator.receive_text()) == {
                "type": "close",
                "reason": "owner said no",
            }
    ended = _state(overlord, session_id)
    assert ended["state"] == "ended"
    assert ended["end_reason"] == "device"
    assert ended["end_detail"] == "owner said no"
    with unit_of_work(overlord.ctx.sessions) as session:
        actions = list(
            session.scalars(select(AuditEntry.action).where(AuditEntry.object_id == device_id))
        )
    assert AuditAction.REMOTE_END in actions


def test_another_devices_token_is_refused_before_the_upgrade(overlord: Overlord):
    device_id, _auth = overlord.enroll("WS2")
    _other, other_auth = overlord.enroll("WS3")
    session_id = _open_logs(overlord, device_id)
    with (
        pytest.raises(WebSocketDisconnect),
        _join(overlord, device_id, session_id, other_auth),
    ):
        pass
    assert _state(overlord, session_id)["state"] == "pending"


@pytest.mark.parametrize(
    "hostile",
    [
        "not json",
        json.dumps({"type": "shell-please"}),
        json.dumps({"type": "close", "reason": "x" * 201}),
        json.dumps({"type": "dropped", "count": 0}),
        "x" * (frames.MAX_TEXT_BYTES + 1),
        b"\0" * (frames.MAX_BINARY_BYTES + 1),
    ],
    ids=["not-json", "unknown-type", "long-reason", "no-count", "big-text", "big-binary"],
)
def test_a_hostile_frame_ends_the_session_with_error(overlord: Overlord, hostile: str | bytes):
    device_id, device_auth = overlord.enroll("WS4")
    session_id = _open_logs(overlord, device_id)
    with _join(overlord, device_id, session_id, device_auth) as device:
        if isinstance(hostile, bytes):
            device.send_bytes(hostile)
        else:
            device.send_text(hostile)
        answer = json.loads(device.receive_text())
        assert answer["type"] == "error"
    ended = _state(overlord, session_id)
    assert ended["end_reason"] == "error"


def test_a_slow_log_reader_gets_a_dropped_count_not_a_stall():
    async def fill_then_read() -> list[object]:
        box = Mailbox(lossy=True)
        for number in range(100):
            await box.put(str(number).encode())
        return [await box.take(), await box.take()]

    dropped, first = asyncio.run(fill_then_read())
    assert json.loads(str(dropped)) == {"type": "dropped", "count": 36}
    assert first == b"36"


def test_a_silent_session_ends_idle(database_url: str, repo: Repo):
    """The replica holding the device's socket ends it after the idle timeout (10 s, the
    setting's lowest); the test waits for the close frame, it does not time it."""
    overlord = make_overlord(database_url, repo, remote_idle_timeout_s=10)
    with overlord.client:
        device_id, device_auth = overlord.enroll("WS5")
        session_id = _open_logs(overlord, device_id)
        with _join(overlord, device_id, session_id, device_auth) as device:
            assert json.loads(device.receive_text()) == {
                "type": "close",
                "reason": "idle limit reached",
            }
        assert _state(overlord, session_id)["end_reason"] == "idle"


def test_attach_is_refused_for_an_ended_session_and_a_second_device_socket(overlord: Overlord):
    device_id, device_auth = overlord.enroll("WS6")
    session_id = _open_logs(overlord, device_id)
    with _join(overlord, device_id, session_id, device_auth) as device:
        # The session is active now: a second join of it is refused before the upgrade.
        with (
            pytest.raises(WebSocketDisconnect),
            _join(overlord, device_id, session_id, device_auth),
        ):
            pass
        device.send_text(frames.text("close", reason="done"))
        assert json.loads(device.receive_text())["type"] == "close"
    assert _state(overlord, session_id)["end_reason"] == "device"
    with (
        pytest.raises(WebSocketDisconnect),
        overlord.client.websocket_connect(
            f"/api/v1/remote/{session_id}/attach", headers=overlord.as_admin()
        ),
    ):
        pass


def test_an_admin_delete_closes_both_sockets_at_once(overlord: Overlord):
    device_id, device_auth = overlord.enroll("WSDEL")
    session_id = _open_logs(overlord, device_id)
    with (
        _join(overlord, device_id, session_id, device_auth) as device,
        overlord.client.websocket_connect(
            f"/api/v1/remote/{session_id}/attach", headers=overlord.as_admin()
        ) as operator,
    ):
        answer = overlord.client.delete(
            f"/api/v1/remote-sessions/{session_id}", headers=overlord.as_admin()
        )
        assert answer.status_code == 200, answer.text
        for side in (device, operator):
            closed = json.loads(side.receive_text())
            assert closed["type"] == "close" and closed["reason"].startswith("ended by ")
            with pytest.raises(WebSocketDisconnect):
                side.receive_text()
    ended = _state(overlord, session_id)
    assert (ended["state"], ended["end_reason"]) == ("ended", "operator")
