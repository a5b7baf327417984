"""Operator actions in the dashboard: roles, CSRF tokens and Origin checks."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from overlord.auth.models import KeyRole
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
