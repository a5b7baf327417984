"""A remote shell across two real ``overlord serve`` replicas on one PostgreSQL (ADR 0074,
shell slice): the agent's thread runs ``/bin/sh`` in a PTY and joins on replica a, the
operator attaches on replica b; what is typed runs, the exit status comes back, and the
recording (written by replica a) is what was typed and printed, read from replica b. A
shell for another device's token is refused, and a device whose ``fleet.yaml`` forbids
shells refuses even though its configuration allows them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from fleetcore.firstboot import RemoteAccess
from fleetcore.websocket import Closed, WebSocket
from overlord.auth.models import KeyRole
from overlord.remote import asciicast, frames
from tests.overlord.conftest import create_token
from tests.overlord.servers import overlord_process
from tests.overlord.test_remote_agent import _follower, _until
from tests.overlord.test_remote_replicas import _ended
from tests.overlord.test_replicas import _env, _register, pg_repo  # noqa: F401 (fixture)
from tests.overlord.tufrepo import Repo

pytestmark = pytest.mark.integration
SHELL = ["/bin/sh"]


def _open_shell(base: str, device_id: str, admin: dict[str, str]) -> str:
    allowed = httpx.put(
        f"{base}/api/v1/config/devices/{device_id}/FLEET_REMOTE_SHELL",
        json={"value": "1"},
        headers=admin,
    )
    assert allowed.status_code == 200, allowed.text
    opened = httpx.post(
        f"{base}/api/v1/devices/{device_id}/remote-sessions", json={"kind": "shell"}, headers=admin
    )
    assert opened.status_code == 201, opened.text
    session_id: str = opened.json()["id"]
    return session_id


def _read_until_close(operator: WebSocket) -> tuple[bytes, list[dict[str, object]]]:
    output, controls = b"", []
    try:
        while True:
            message = operator.receive(30)
            assert message is not None, "the shell went quiet"
            if isinstance(message, bytes):
                output += message
            else:
                controls.append(json.loads(message))
                if controls[-1]["type"] == "close":
                    return output, controls
    except Closed:
        return output, controls


def test_a_shell_spans_two_replicas_and_its_recording_is_what_was_typed(
    pg_repo: tuple[str, Repo],  # noqa: F811
    tmp_path: Path,
):
    url, repo = pg_repo
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    env = _env(url, repo, OVERLORD_RUN_SCHEDULER="false")
    with (
        overlord_process(env, log=tmp_path / "a.log") as a,
        overlord_process(env, log=tmp_path / "b.log") as b,
    ):
        device_id, auth = _register(a, enrollment, "SHELLREP1")
        _other_id, other_auth = _register(a, enrollment, "SHELLREP2")
        session_id = _open_shell(b, device_id, admin)

        # Another device's credential never reaches the session.
        with pytest.raises(Closed, match="refused"):
            WebSocket(a + f"/api/v1/devices/{device_id}/remote/{session_id}", other_auth)

        operator = WebSocket(b + f"/api/v1/remote/{session_id}/attach", admin)
        client, follower = _follower(
            a, device_id, auth, RemoteAccess(shell=True), shell_command=SHELL
        )
        desired, _etag = client.desired_state(None)
        assert desired is not None and desired.remote is not None
        follower.follow(desired.remote)
        prompt = operator.receive(30)
        assert isinstance(prompt, bytes)
        typed = b"echo across-$((20+1)); cat /etc/hostname > /dev/null; exit 4\n"
        operator.send_text(frames.text("resize", cols=90, rows=20))
        operator.send_bytes(typed)
        output, controls = _read_until_close(operator)
        operator.close()
        assert b"across-21" in output
        assert controls[0] == {"type": "exit", "status": 4}
        _until(lambda: not follower.serving, "the agent's session thread to end")
        ended = _ended(b, session_id, admin)
        assert (ended["end_reason"], ended["end_detail"]) == (
            "device",
            "the shell exited with status 4",
        )

        cast = httpx.get(f"{b}/api/v1/remote-sessions/{session_id}/recording", headers=admin)
        assert cast.status_code == 200, cast.text
        _header, events = asciicast.load(cast.text)
        assert "".join(d for _t, code, d in events if code == "i") == typed.decode()
        assert ("r", "90x20") in [(code, d) for _t, code, d in events]
        printed = "".join(d for _t, code, d in events if code == "o")
        assert (prompt + output).decode() == printed

        # fleet.yaml says no: configuration allows it, the device refuses with its reason.
        session_id = _open_shell(a, device_id, admin)
        client, follower = _follower(a, device_id, auth, RemoteAccess(), shell_command=SHELL)
        desired, _etag = client.desired_state(None)
        assert desired is not None and desired.remote is not None
        follower.follow(desired.remote)
        _until(lambda: _ended(b, session_id, admin)["state"] == "ended", "the refusal")
        ended = _ended(b, session_id, admin)
        assert ended["end_reason"] == "device"
        assert "fleet.yaml forbids shell" in ended["end_detail"]
