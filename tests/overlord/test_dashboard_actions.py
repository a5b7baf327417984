"""Operator actions in the dashboard: roles, CSRF tokens and Origin checks."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from overlord.auth.models import KeyRole
from overlord.dashboard.routes import PAGE_SIZE
from tests.overlord.conftest import Overlord


def _login(overlord: Overlord, role: KeyRole) -> tuple[TestClient, str]:
    """A browser-like client logged in with a new ``role`` token, and its form token."""
    client = TestClient(overlord.client.app, base_url="http://overlord.test")
    resp = client.post("/dashboard/login", data={"token": overlord.token(role)})
    assert resp.status_code == 200, resp.text
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', resp.text)
    return client, match.group(1) if match else ""


def _rollout(overlord: Overlord) -> int:
    overlord.enroll("ACT1")
    resp = overlord.client.post(
        "/api/v1/rollouts",
        json={"name": "act", "kind": "os", "version": "1.1.0", "stages": [100]},
        headers=overlord.as_admin(),
    )
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def _state(overlord: Overlord, rollout_id: int) -> str:
    resp = overlord.client.get(f"/api/v1/rollouts/{rollout_id}", headers=overlord.as_admin())
    return str(resp.json()["state"])


def test_an_operator_pauses_and_resumes_a_rollout_with_the_form_token(overlord: Overlord):
    rollout_id = _rollout(overlord)
    browser, token = _login(overlord, KeyRole.OPERATOR)
    assert token, "an operator's dashboard offers the rollout actions"
    pause = f"/dashboard/rollouts/{rollout_id}/pause"
    sent = browser.post(pause, data={"csrf": token}, follow_redirects=False)
    assert sent.status_code == 303 and _state(overlord, rollout_id) == "paused"
    again = browser.post(pause, data={"csrf": token})
    assert "cannot pause rollout act: it is paused" in again.text  # shown as a banner
    browser.post(f"/dashboard/rollouts/{rollout_id}/resume", data={"csrf": token})
    assert _state(overlord, rollout_id) == "running"


def test_forged_or_foreign_forms_are_refused(overlord: Overlord):
    rollout_id = _rollout(overlord)
    browser, token = _login(overlord, KeyRole.OPERATOR)
    pause = f"/dashboard/rollouts/{rollout_id}/pause"
    assert browser.post(pause, data={"csrf": "0" * 64}).status_code == 403
    foreign = {"Origin": "https://evil.example"}
    assert browser.post(pause, data={"csrf": token}, headers=foreign).status_code == 403
    other, _other_token = _login(overlord, KeyRole.OPERATOR)
    assert other.post(pause, data={"csrf": token}).status_code == 403, "tokens are per session"
    anonymous = TestClient(overlord.client.app, base_url="http://overlord.test")
    refused = anonymous.post(pause, data={"csrf": token}, follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"] == "/dashboard/login"
    assert _state(overlord, rollout_id) == "running"


def test_actions_need_their_roles(overlord: Overlord):
    rollout_id = _rollout(overlord)
    device_id, _auth = overlord.enroll("ACT2")
    viewer, _none = _login(overlord, KeyRole.VIEWER)
    page = viewer.get("/dashboard").text
    assert 'data-action="pause"' not in page
    viewer_token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert viewer_token is None, "a viewer gets no action forms"
    operator, token = _login(overlord, KeyRole.OPERATOR)
    status = f"/dashboard/devices/{device_id}/status"
    assert 'id="admin-status"' not in operator.get(f"/dashboard/devices/{device_id}").text
    quarantine = {"csrf": token, "status": "quarantined"}
    assert operator.post(status, data=quarantine).status_code == 403
    admin, admin_token = _login(overlord, KeyRole.ADMIN)
    done = admin.post(status, data={"csrf": admin_token, "status": "quarantined"})
    assert done.status_code == 200 and "quarantined" in done.text
    device = overlord.client.get(f"/api/v1/devices/{device_id}", headers=overlord.as_admin())
    assert device.json()["admin_status"] == "quarantined"
    assert _state(overlord, rollout_id) == "running"


def test_the_audit_page_lists_actions_escaped_for_operators_only(overlord: Overlord):
    rollout_id = _rollout(overlord)
    hostile = "<script>alert(1)</script>"
    created = overlord.client.post(
        "/api/v1/tokens", json={"role": "operator", "name": hostile}, headers=overlord.as_admin()
    ).json()
    browser = TestClient(overlord.client.app, base_url="http://overlord.test")
    assert browser.post("/dashboard/login", data={"token": created["token"]}).status_code == 200
    page = browser.get("/dashboard")
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token and 'id="audit-link"' in page.text
    browser.post(f"/dashboard/rollouts/{rollout_id}/pause", data={"csrf": token.group(1)})

    audit = browser.get("/dashboard/audit")
    assert audit.status_code == 200
    rows = re.findall(
        r'<tr class="audit-entry" data-action="([a-z_.]+)" data-via="(\w+)">', audit.text
    )
    assert rows == [
        ("rollout.pause", "dashboard"),
        ("dashboard.login", "dashboard"),
        ("token.create", "api"),
        ("rollout.create", "api"),
    ]
    assert hostile not in audit.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in audit.text
    assert created["token"] not in audit.text

    only = browser.get("/dashboard/audit", params={"object": f"rollout/{rollout_id}"})
    assert only.text.count('class="audit-entry"') == 2
    paused = browser.get("/dashboard/audit", params={"action": "rollout.pause", "actor": hostile})
    assert paused.text.count('class="audit-entry"') == 1
    refused = browser.get("/dashboard/audit", params={"object": "planet/earth"})
    assert refused.status_code == 422 and "no object type" in refused.text

    viewer, _none = _login(overlord, KeyRole.VIEWER)
    assert 'id="audit-link"' not in viewer.get("/dashboard").text
    assert viewer.get("/dashboard/audit").status_code == 403
    anonymous = TestClient(overlord.client.app, base_url="http://overlord.test")
    assert anonymous.get("/dashboard/audit", follow_redirects=False).status_code == 303


def test_the_audit_page_pages_with_an_older_link(overlord: Overlord):
    for i in range(PAGE_SIZE + 3):
        overlord.client.put(f"/api/v1/groups/g{i}", json={}, headers=overlord.as_admin())
    browser, _token = _login(overlord, KeyRole.OPERATOR)
    first = browser.get("/dashboard/audit", params={"action": "group.create"})
    assert first.text.count('class="audit-entry"') == PAGE_SIZE
    older = re.search(r'id="audit-older" href="([^"]+)"', first.text)
    assert older is not None
    rest = browser.get(older.group(1).replace("&amp;", "&"))
    assert rest.text.count('class="audit-entry"') == 3 and 'id="audit-older"' not in rest.text
    assert ">group/g0<" in rest.text
