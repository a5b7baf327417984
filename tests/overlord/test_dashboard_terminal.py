"""The device page's terminal over plain HTTP: who sees the Open shell button, opening a
shell from the page, and the cookie-authenticated attach with its Origin check."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse, WebSocketTestSession

from overlord.auth.deps import SESSION_COOKIE
from overlord.auth.models import KeyRole
from overlord.dashboard import csrf
from overlord.remote import frames
from tests.overlord.conftest import Overlord
from tests.overlord.test_dashboard_actions import _login as _log_in

SITE = {"Origin": "http://overlord.test"}  # the browser-like client's own origin
WS = "ws://overlord.test"  # the browser-like client's host (the test client's default is another)


def _login(overlord: Overlord, role: KeyRole) -> tuple[TestClient, str]:
    """A logged-in browser-like client and its session's form token (as a page renders it)."""
    browser, _shown = _log_in(overlord, role)
    return browser, csrf.token_for(browser.cookies[SESSION_COOKIE])


def _allow_shell(overlord: Overlord, device_id: str) -> None:
    allowed = overlord.client.put(
        f"/api/v1/config/devices/{device_id}/FLEET_REMOTE_SHELL",
        json={"value": "1"},
        headers=overlord.as_admin(),
    )
    assert allowed.status_code == 200, allowed.text


def _open(browser: TestClient, device_id: str, token: str) -> str:
    opened = browser.post(f"/dashboard/devices/{device_id}/remote/shell", data={"csrf": token})
    assert opened.status_code == 201, opened.text
    attach: str = opened.json()["attach"]
    return attach


def _attach(
    overlord: Overlord, browser: TestClient, attach: str, headers: dict[str, str]
) -> WebSocketTestSession:
    """The browser's WebSocket: its cookie, on the app's running client (one event loop for
    both ends of a session, as in a served Overlord)."""
    cookie = {"Cookie": f"{SESSION_COOKIE}={browser.cookies[SESSION_COOKIE]}"}
    return overlord.client.websocket_connect(WS + attach, headers=headers | cookie)


def _state(overlord: Overlord, attach: str) -> dict[str, object]:
    session_id = attach.split("/")[-2]
    answer = overlord.client.get(
        f"/api/v1/remote-sessions/{session_id}", headers=overlord.as_admin()
    )
    body: dict[str, object] = answer.json()
    return body


def test_only_an_admin_sees_open_shell_and_only_where_the_policy_allows(overlord: Overlord):
    device_id, _auth = overlord.enroll("TERM1")
    admin, _csrf = _login(overlord, KeyRole.ADMIN)
    viewer, _viewer_csrf = _login(overlord, KeyRole.VIEWER)
    page = f"/dashboard/devices/{device_id}"
    assert 'id="shell-open"' not in admin.get(page).text, "shells are off by default"
    _allow_shell(overlord, device_id)
    shown = admin.get(page).text
    assert f'data-csrf="{csrf.token_for(admin.cookies[SESSION_COOKIE])}"' in shown
    assert 'id="shell-open"' in shown and "/static/vendor/xterm/xterm.js" in shown
    assert 'id="shell-open"' not in viewer.get(page).text
    assert admin.get("/static/vendor/xterm/xterm.js").status_code == 200


def test_opening_from_the_page_needs_the_form_token_the_admin_role_and_the_policy(
    overlord: Overlord,
):
    device_id, _auth = overlord.enroll("TERM2")
    admin, token = _login(overlord, KeyRole.ADMIN)
    shell = f"/dashboard/devices/{device_id}/remote/shell"
    refused = admin.post(shell, data={"csrf": token})
    assert refused.status_code == 403 and "FLEET_REMOTE_SHELL=1" in refused.json()["detail"]
    _allow_shell(overlord, device_id)
    assert admin.post(shell, data={"csrf": "0" * 64}).status_code == 403
    assert (
        admin.post(
            shell, data={"csrf": token}, headers={"Origin": "https://evil.example"}
        ).status_code
        == 403
    )
    viewer, viewer_csrf = _login(overlord, KeyRole.VIEWER)
    assert viewer.post(shell, data={"csrf": viewer_csrf}).status_code == 403
    attach = _open(admin, device_id, token)
    assert _state(overlord, attach)["opened_by"] == "test admin"


def test_the_page_attaches_with_its_cookie_and_ends_the_session(overlord: Overlord):
    device_id, device_auth = overlord.enroll("TERM3")
    _allow_shell(overlord, device_id)
    admin, token = _login(overlord, KeyRole.ADMIN)
    attach = _open(admin, device_id, token)
    session_id = attach.split("/")[-2]
    with (
        overlord.client.websocket_connect(
            f"/api/v1/devices/{device_id}/remote/{session_id}", headers=device_auth
        ) as device,
        _attach(overlord, admin, attach, SITE) as operator,
    ):
        operator.send_text(frames.text("resize", cols=100, rows=30))
        assert json.loads(device.receive_text()) == {"type": "resize", "cols": 100, "rows": 30}
        operator.send_bytes(b"echo hi\n")
        assert device.receive_bytes() == b"echo hi\n"
        device.send_bytes(b"hi\r\n$ ")
        assert operator.receive_bytes() == b"hi\r\n$ "
        operator.send_text(frames.text("close", reason="ended from the dashboard"))
        assert json.loads(operator.receive_text())["type"] == "close"
        assert json.loads(device.receive_text())["type"] == "close"
    ended = _state(overlord, attach)
    assert (ended["end_reason"], ended["end_detail"]) == ("operator", "ended from the dashboard")


@pytest.mark.parametrize(
    ("role", "headers", "refusal"),
    [
        (KeyRole.VIEWER, SITE, "a shell session needs the admin role"),
        (KeyRole.ADMIN, {"Origin": "https://evil.example"}, "a page of another site"),
        (KeyRole.ADMIN, {"Origin": "http://overlord.test.evil.example"}, "another site"),
        (KeyRole.ADMIN, {}, "only from the dashboard's pages (no Origin)"),
    ],
    ids=["viewer", "foreign-origin", "lookalike-origin", "no-origin"],
)
def test_a_cookie_attach_is_refused_for_a_viewer_or_without_this_sites_origin(
    overlord: Overlord, role: KeyRole, headers: dict[str, str], refusal: str
):
    device_id, _auth = overlord.enroll("TERM4")
    _allow_shell(overlord, device_id)
    admin, token = _login(overlord, KeyRole.ADMIN)
    attach = _open(admin, device_id, token)
    browser, _token = (admin, token) if role is KeyRole.ADMIN else _login(overlord, role)
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        _attach(overlord, browser, attach, headers),
    ):
        pass
    assert denied.value.status_code == 403 and refusal in denied.value.json()["detail"]
    assert _state(overlord, attach)["state"] == "pending", "nothing attached"


def test_a_viewer_follows_the_journal_from_the_page_unless_log_tails_are_off(overlord: Overlord):
    device_id, device_auth = overlord.enroll("TERM5")
    viewer, token = _login(overlord, KeyRole.VIEWER)
    page = f"/dashboard/devices/{device_id}"
    assert 'id="logs-open"' in viewer.get(page).text, "log tails are on by default"
    opened = viewer.post(f"{page}/remote/logs", data={"csrf": token})
    assert opened.status_code == 201, opened.text
    attach: str = opened.json()["attach"]
    session_id = attach.split("/")[-2]
    assert _state(overlord, attach)["params"] == {"lines": 100}
    line = json.dumps({"MESSAGE": "hello from the journal", "_SYSTEMD_UNIT": "x.service"})
    with (
        overlord.client.websocket_connect(
            f"/api/v1/devices/{device_id}/remote/{session_id}", headers=device_auth
        ) as device,
        _attach(overlord, viewer, attach, SITE) as operator,
    ):
        device.send_bytes(line.encode())
        assert operator.receive_bytes() == line.encode()
        operator.send_text(frames.text("close", reason="ended from the dashboard"))
        assert json.loads(device.receive_text())["type"] == "close"
    assert _state(overlord, attach)["end_reason"] == "operator"
    off = overlord.client.put(
        f"/api/v1/config/devices/{device_id}/FLEET_REMOTE_LOGS",
        json={"value": "0"},
        headers=overlord.as_admin(),
    )
    assert off.status_code == 200, off.text
    assert 'id="logs-open"' not in viewer.get(page).text
    assert viewer.post(f"{page}/remote/logs", data={"csrf": token}).status_code == 403
    assert viewer.post(f"{page}/remote/nonsense", data={"csrf": token}).status_code == 422
