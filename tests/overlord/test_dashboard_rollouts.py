"""The dashboard's release list and new-rollout form, and a rollout's own page: roles, CSRF,
refusals that name the field and store nothing, audit entries. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from overlord.auth.deps import SESSION_COOKIE
from overlord.auth.models import KeyRole
from overlord.dashboard import csrf
from overlord.db import utcnow
from tests.overlord.conftest import Overlord
from tests.overlord.test_dashboard_actions import _login as _session


def _form(token: str, **fields: str | list[str]) -> dict[str, str | list[str]]:
    base: dict[str, str | list[str]] = {
        "csrf": token,
        "release": "os/1.1.0",
        "name": "spring",
        "canary_devices": "1",
        "stages": "50,100",
        "success_window_s": "60",
        "failure_threshold": "0.05",
        "start_at": "",
        "deadline": "",
    }
    return base | fields


def _login(overlord: Overlord, role: KeyRole) -> tuple[TestClient, str]:
    """A dashboard session and its form token (a viewer's pages offer no form to take it
    from, so it is worked out as the server does: the refusal must come from the role)."""
    browser, _ = _session(overlord, role)
    return browser, csrf.token_for(browser.cookies[SESSION_COOKIE])


def _rollouts(overlord: Overlord) -> list[dict]:
    return overlord.client.get("/api/v1/rollouts", headers=overlord.as_admin()).json()


@pytest.fixture
def fleet(overlord: Overlord) -> dict[str, str]:
    ids = {name: overlord.enroll(name.upper())[0] for name in ("cam1", "cam2", "door1")}
    for group in ("cameras", "doors"):
        overlord.client.put(f"/api/v1/groups/{group}", json={}, headers=overlord.as_admin())
    for name, group in (("cam1", "cameras"), ("cam2", "cameras"), ("door1", "doors")):
        overlord.client.patch(
            f"/api/v1/devices/{ids[name]}", json={"group": group}, headers=overlord.as_admin()
        )
    return ids


def test_the_release_page_lists_releases_where_they_run_and_their_rollouts(
    overlord: Overlord, fleet: dict[str, str]
):
    earlier = overlord.client.post(
        "/api/v1/rollouts",
        json={"name": "earlier", "kind": "os", "version": "1.1.0"},
        headers=overlord.as_admin(),
    ).json()
    viewer, token = _login(overlord, KeyRole.VIEWER)
    page = viewer.get("/dashboard/releases")
    assert page.status_code == 200
    rows = re.findall(r'<tr class="release" data-release="([^"]+)">(.*?)</tr>', page.text, re.S)
    by_release = dict(rows)
    assert set(by_release) == {"os/1.1.0", "os/1.0.0", "role/camera/2.0.0"}
    assert "<strong>3</strong> devices" in by_release["os/1.0.0"]
    assert "cameras 2 · doors 1" in by_release["os/1.0.0"]
    assert "<strong>0</strong> devices" in by_release["os/1.1.0"]
    assert f'href="/dashboard/rollouts/{earlier["id"]}">earlier</a>' in by_release["os/1.1.0"]
    assert "pi4" in by_release["os/1.1.0"] and "MiB" in by_release["os/1.1.0"]
    assert 'id="rollout-form"' not in page.text, "a viewer sees no form"
    refused = viewer.post("/dashboard/rollouts", data=_form(token))
    assert refused.status_code == 403 and "operator role" in refused.text
    assert [r["name"] for r in _rollouts(overlord)] == ["earlier"]


def test_an_operator_creates_a_targeted_scheduled_rollout_from_the_form(
    overlord: Overlord, fleet: dict[str, str]
):
    browser, token = _login(overlord, KeyRole.OPERATOR)
    assert 'id="rollout-form"' in browser.get("/dashboard/releases").text
    start = (utcnow() + timedelta(hours=1)).replace(microsecond=0, tzinfo=None)
    form = _form(
        token,
        groups=["cameras", "doors"],
        exclude_devices=fleet["door1"],
        exclude_labels="bench=yes",
        hardware=["pi4"],
        start_at=start.isoformat(),
        deadline=(start + timedelta(hours=2)).isoformat(),
    )
    sent = browser.post("/dashboard/rollouts", data=form, follow_redirects=False)
    assert sent.status_code == 303, sent.text
    (created,) = _rollouts(overlord)
    assert sent.headers["location"] == f"/dashboard/rollouts/{created['id']}"
    assert created["state"] == "pending"
    assert created["selector"]["groups"] == ["cameras", "doors"]
    assert created["selector"]["exclude"]["devices"] == [fleet["door1"]]
    assert created["start_at"].startswith(start.isoformat())
    page = browser.get(sent.headers["location"]).text
    assert "groups cameras,doors; hardware pi4; excluding label bench=yes" in page
    assert f"{start:%Y-%m-%d %H:%M:%S} UTC" in page
    entries = overlord.client.get(
        "/api/v1/audit?action=rollout.create", headers=overlord.as_admin()
    ).json()["items"]
    assert [(e["via"], e["object_id"]) for e in entries] == [("dashboard", str(created["id"]))]


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"name": ""}, 422, "name: String should match pattern"),
        ({"release": "os/9.9.9"}, 404, "no signed os release"),
        ({"release": "firmware/1"}, 422, "release: pick a release"),
        ({"groups": ["nowhere"]}, 404, "selector.groups: no device group nowhere"),
        ({"labels": "site=mars"}, 422, "selector matches no active device"),
        ({"labels": "site"}, 422, "labels: write KEY=VALUE"),
        ({"stages": "50"}, 422, "strictly increase and end at 100"),
        ({"start_at": "2020-01-01T06:00"}, 422, "start_at: Value error, start_at"),
        ({"start_at": "soon"}, 422, "start_at: not a date and time"),
        ({"deadline": "2020-01-01T06:00:00+00:00"}, 422, "deadline: Value error"),
        ({"exclude_devices": "x" * 40}, 422, "selector.exclude.devices.0: String should"),
        ({"colour": "red"}, 422, "colour: not a field of this form"),
        ({"name": ["a", "b"]}, 422, "name: sent more than once"),
    ],
)
def test_a_refused_form_names_the_field_keeps_the_values_and_stores_nothing(
    overlord: Overlord, fleet: dict[str, str], fields: dict, status: int, words: str
):
    browser, token = _login(overlord, KeyRole.OPERATOR)
    answer = browser.post("/dashboard/rollouts", data=_form(token, **fields))
    assert answer.status_code == status, answer.text
    assert words in answer.text.replace("&#39;", "'"), answer.text
    assert 'id="rollout-error"' in answer.text
    assert _rollouts(overlord) == []


def test_the_form_needs_the_sessions_token(overlord: Overlord, fleet: dict[str, str]):
    browser, _token = _login(overlord, KeyRole.OPERATOR)
    assert browser.post("/dashboard/rollouts", data=_form("0" * 64)).status_code == 403
    assert _rollouts(overlord) == []


def test_a_rollout_halted_by_its_deadline_explains_why_and_offers_only_abort(
    overlord: Overlord, fleet: dict[str, str]
):
    created = overlord.client.post(
        "/api/v1/rollouts",
        json={"name": "late", "kind": "os", "version": "1.1.0", "deadline": _soon()},
        headers=overlord.as_admin(),
    ).json()
    from tests.overlord.test_rollouts import _tick

    _tick(overlord, later_s=120)
    browser, token = _login(overlord, KeyRole.OPERATOR)
    page = browser.get(f"/dashboard/rollouts/{created['id']}").text
    assert "deadline passed" in page and "cannot be resumed" in page
    assert 'data-action="resume"' not in page and 'data-action="abort"' in page
    assert overlord.client.get(
        f"/api/v1/rollouts/{created['id']}", headers=overlord.as_admin()
    ).json()["actions"] == ["abort"]
    aborted = browser.post(
        f"/dashboard/rollouts/{created['id']}/abort",
        data={"csrf": token, "back": "rollout"},
        follow_redirects=False,
    )
    assert aborted.headers["location"] == f"/dashboard/rollouts/{created['id']}"
    assert _rollouts(overlord)[0]["state"] == "aborted"


def _soon() -> str:
    return (utcnow() + timedelta(seconds=60)).isoformat()
