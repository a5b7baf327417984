"""Configuration variables through the API: the three levels, secrets at rest and in every
answer, bad input, roles and the audit log. Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select, text

from fleetcore.logs import JsonLines
from overlord.audit.models import AuditEntry
from overlord.auth.models import KeyRole
from overlord.configvars import sealing
from overlord.configvars.models import ConfigVariable
from overlord.db import unit_of_work
from overlord.settings import Settings
from tests.overlord.conftest import Overlord, heartbeat, make_overlord
from tests.overlord.tufrepo import Repo

CONFIG = "/api/v1/config"
SECRET = "hunter2-camera-stream-password"
KEY = sealing.new_key()


@pytest.fixture
def keyed(database_url: str, repo: Repo) -> Iterator[Overlord]:
    """An Overlord with OVERLORD_CONFIG_KEY, so secret values can be stored."""
    ov = make_overlord(database_url, repo, config_key=KEY)
    with ov.client:
        yield ov


def _api(overlord: Overlord, method: str, path: str, **kwargs: Any) -> Any:
    answer = overlord.client.request(method, CONFIG + path, headers=overlord.as_admin(), **kwargs)
    assert answer.status_code < 300, (method, path, answer.status_code, answer.text)
    return answer.json() if answer.content else None


def _set(overlord: Overlord, path: str, value: str, *, secret: bool = False) -> Any:
    return _api(overlord, "PUT", path, json={"value": value, "secret": secret})


def _group_with_device(overlord: Overlord, group: str, serial: str) -> str:
    device_id, _auth = overlord.enroll(serial)
    _admin = overlord.as_admin()
    assert overlord.client.put(f"/api/v1/groups/{group}", json={}, headers=_admin).is_success
    moved = overlord.client.patch(
        f"/api/v1/devices/{device_id}", json={"group": group}, headers=_admin
    )
    assert moved.is_success
    return device_id


def _audit(overlord: Overlord) -> list[AuditEntry]:
    with unit_of_work(overlord.ctx.sessions) as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_the_most_specific_level_wins_and_says_where_it_came_from(overlord: Overlord):
    device_id = _group_with_device(overlord, "cameras", "CFG1")
    _set(overlord, "/fleet/CAMERA_FPS", "15")
    _set(overlord, "/fleet/SITE", "north")
    _set(overlord, "/groups/cameras/CAMERA_FPS", "25")
    effective = _api(overlord, "GET", f"/devices/{device_id}/effective")
    rows = [(v["key"], v["value"], v["source"], v["overrides"]) for v in effective["variables"]]
    assert rows == [
        ("CAMERA_FPS", "25", "group/cameras", ["fleet"]),
        ("SITE", "north", "fleet", []),
    ]
    assert effective["group"] == "cameras" and effective["applied_digest"] is None
    first = effective["digest"]

    _set(overlord, f"/devices/{device_id}/CAMERA_FPS", "30")
    effective = _api(overlord, "GET", f"/devices/{device_id}/effective")
    assert effective["variables"][0]["source"] == f"device/{device_id}"
    assert effective["variables"][0]["overrides"] == ["group/cameras", "fleet"]
    assert effective["digest"] != first

    assert _api(overlord, "DELETE", f"/devices/{device_id}/CAMERA_FPS") is None
    effective = _api(overlord, "GET", f"/devices/{device_id}/effective")
    assert effective["variables"][0]["value"] == "25" and effective["digest"] == first

    listed = _api(overlord, "GET", "/groups/cameras")
    assert listed["scope"] == "group" and listed["name"] == "cameras"
    assert [(v["key"], v["value"], v["secret"]) for v in listed["variables"]] == [
        ("CAMERA_FPS", "25", False)
    ]
    fleet = _api(overlord, "GET", "/fleet")
    assert fleet["name"] is None and [v["key"] for v in fleet["variables"]] == [
        "CAMERA_FPS",
        "SITE",
    ]


def test_a_change_of_several_keys_is_one_entry_per_verb(overlord: Overlord):
    _set(overlord, "/fleet/OLD", "1")
    _set(overlord, "/fleet/KEEP", "k")
    before = len(_audit(overlord))
    answer = _api(
        overlord,
        "PATCH",
        "/fleet",
        json={"set": {"A": {"value": "1"}, "KEEP": {"value": "2"}}, "unset": ["OLD"]},
    )
    assert [(v["key"], v["value"]) for v in answer["variables"]] == [("A", "1"), ("KEEP", "2")]
    made = _audit(overlord)[before:]
    assert [(e.action, e.object_type, e.object_id) for e in made] == [
        ("config.set", "config", "fleet"),
        ("config.unset", "config", "fleet"),
    ]
    assert made[0].before == {"values": {"KEEP": "k"}, "masked": []}
    assert made[0].after == {"values": {"A": "1", "KEEP": "2"}, "masked": []}
    assert made[1].before == {"values": {"OLD": "1"}, "masked": []} and made[1].after is None


def test_secrets_are_sealed_at_rest_and_shown_only_as_stars(
    keyed: Overlord, caplog: pytest.LogCaptureFixture
):
    device_id = _group_with_device(keyed, "cameras", "CFG2")
    with caplog.at_level(logging.DEBUG):
        put = _set(keyed, "/groups/cameras/STREAM_PASSWORD", SECRET, secret=True)
        _set(keyed, f"/devices/{device_id}/API_KEY", SECRET + "-2", secret=True)
        _api(keyed, "PATCH", "/fleet", json={"set": {"STREAM_USER": {"value": "cam"}}})
        # Turned into a plain value and back: the audit's before side must not show it.
        _set(keyed, f"/devices/{device_id}/API_KEY", "public")
        _set(keyed, f"/devices/{device_id}/API_KEY", SECRET + "-3", secret=True)
        _api(keyed, "DELETE", f"/devices/{device_id}/API_KEY")
    assert put["value"] == "***" and put["secret"] is True
    answers = [
        json.dumps(_api(keyed, "GET", path))
        for path in ("/fleet", "/groups/cameras", f"/devices/{device_id}")
    ]
    effective = _api(keyed, "GET", f"/devices/{device_id}/effective")
    assert {v["key"]: v["value"] for v in effective["variables"]} == {
        "STREAM_PASSWORD": "***",
        "STREAM_USER": "cam",
    }
    answers.append(json.dumps(effective))
    audit_page = keyed.client.get("/api/v1/audit", headers=keyed.as_admin()).json()
    answers.append(json.dumps(audit_page))
    with unit_of_work(keyed.ctx.sessions) as session:
        stored = repr(session.execute(text("SELECT * FROM config_variables")).all())
        stored += repr(session.execute(text("SELECT * FROM audit_log")).all())
        row = session.scalars(
            select(ConfigVariable).where(ConfigVariable.key == "STREAM_PASSWORD")
        ).one()
    lines = "\n".join(JsonLines().format(r) for r in caplog.records)
    for where in (*answers, stored, lines):
        assert SECRET not in where
    assert row.value is None and row.sealed is not None and row.sealed.startswith("v1.")
    opened = keyed.ctx.sealer
    assert opened is not None
    assert opened.open(row.sealed, binding="group/cameras/STREAM_PASSWORD") == SECRET
    secret_sets = [e for e in _audit(keyed) if e.action == "config.set" and e.after]
    assert {"values": {"STREAM_PASSWORD": "***"}, "masked": ["STREAM_PASSWORD"]} in [
        e.after for e in secret_sets
    ]


def test_a_secret_without_a_key_is_refused_and_nothing_is_stored(overlord: Overlord):
    before = len(_audit(overlord))
    for method, path, body in (
        ("PUT", "/fleet/TOKEN_X", {"value": SECRET, "secret": True}),
        ("PATCH", "/fleet", {"set": {"A": {"value": "1"}, "B": {"value": SECRET, "secret": True}}}),
    ):
        answer = overlord.client.request(
            method, CONFIG + path, json=body, headers=overlord.as_admin()
        )
        assert answer.status_code == 409, answer.text
        assert "OVERLORD_CONFIG_KEY" in answer.json()["detail"]
        assert "overlord config-key" in answer.json()["hint"]
        assert SECRET not in answer.text
    assert _api(overlord, "GET", "/fleet")["variables"] == []
    assert len(_audit(overlord)) == before


def _refused(overlord: Overlord, method: str, path: str, body: object = None) -> Any:
    answer = overlord.client.request(method, CONFIG + path, json=body, headers=overlord.as_admin())
    assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text)
    return answer


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/fleet/camera_fps", {"value": "1"}, "key"),
        ("/fleet/A" + "B" * 64, {"value": "1"}, "key"),
        ("/fleet/FPS", {"value": "x" * 4097}, "value"),
        ("/fleet/FPS", {"value": "é" * 2049}, "value"),
        ("/fleet/FPS", {"value": "two\nlines"}, "value"),
        ("/fleet/FPS", {"value": "1", "encrypted": True}, "encrypted"),
        ("/fleet/FPS", {"value": 25}, "value"),
    ],
)
def test_bad_input_names_the_field(overlord: Overlord, path: str, body: object, field: str):
    answer = _refused(overlord, "PUT", path, body)
    assert answer.status_code == 422
    assert field in answer.json()["detail"][0]["loc"]
    assert "x" * 100 not in answer.text and "é" * 100 not in answer.text


def test_nothing_partial_is_stored(overlord: Overlord):
    _group_with_device(overlord, "cameras", "CFG3")
    before = len(_audit(overlord))
    bad_key = {"set": {"GOOD": {"value": "1"}, "bad-key": {"value": "2"}}}
    assert _refused(overlord, "PATCH", "/fleet", bad_key).status_code == 422
    unset_missing = {"set": {"GOOD": {"value": "1"}}, "unset": ["MISSING"]}
    answer = _refused(overlord, "PATCH", "/fleet", unset_missing)
    assert answer.status_code == 404 and "MISSING" in answer.json()["detail"]
    both = {"set": {"GOOD": {"value": "1"}}, "unset": ["GOOD"]}
    assert _refused(overlord, "PATCH", "/fleet", both).status_code == 422
    assert _refused(overlord, "PATCH", "/fleet", {}).status_code == 422
    assert _refused(overlord, "DELETE", "/fleet/MISSING").status_code == 404
    assert _refused(overlord, "PUT", "/groups/nope/A", {"value": "1"}).status_code == 404
    assert _refused(overlord, "GET", "/groups/nope").status_code == 404
    assert _refused(overlord, "PUT", "/devices/dev-nope/A", {"value": "1"}).status_code == 404
    assert _refused(overlord, "GET", "/devices/dev-nope/effective").status_code == 404
    assert _api(overlord, "GET", "/fleet")["variables"] == []
    assert len(_audit(overlord)) == before


def test_a_scope_holds_a_bounded_number_of_keys_and_bytes(overlord: Overlord):
    many = {"set": {f"K{i}": {"value": "v"} for i in range(100)}}
    assert len(_api(overlord, "PATCH", "/fleet", json=many)["variables"]) == 100
    answer = _refused(overlord, "PUT", "/fleet/ONE_MORE", {"value": "v"})
    assert answer.status_code == 422 and "at most 100" in answer.json()["detail"]
    _api(overlord, "PUT", "/fleet/K0", json={"value": "replacing one is fine"})
    too_many = {"set": {f"K{i}": {"value": "v"} for i in range(101)}}
    assert _refused(overlord, "PATCH", "/groups/x", too_many).status_code == 422
    _api(overlord, "PATCH", "/fleet", json={"unset": [f"K{i}" for i in range(99)]})
    # 16 values of 4 KiB and their keys pass 64 KiB.
    big = {"set": {f"BIG{i}": {"value": "b" * 4096} for i in range(16)}}
    answer = _refused(overlord, "PATCH", "/fleet", big)
    assert answer.status_code == 422 and "bytes" in answer.json()["detail"]
    assert [v["key"] for v in _api(overlord, "GET", "/fleet")["variables"]] == ["K99"]
    del big["set"]["BIG15"]
    assert len(_api(overlord, "PATCH", "/fleet", json=big)["variables"]) == 16


def test_viewers_read_operators_write(overlord: Overlord):
    device_id, device_auth = overlord.enroll("CFG4")
    viewer = {"Authorization": f"Bearer {overlord.token(KeyRole.VIEWER)}"}
    operator = {"Authorization": f"Bearer {overlord.token(KeyRole.OPERATOR)}"}
    path = f"{CONFIG}/devices/{device_id}"
    assert overlord.client.put(f"{path}/A", json={"value": "1"}, headers=viewer).status_code == 403
    assert overlord.client.put(f"{path}/A", json={"value": "1"}, headers=operator).is_success
    assert overlord.client.get(path, headers=viewer).json()["variables"][0]["value"] == "1"
    assert overlord.client.get(f"{path}/effective", headers=viewer).is_success
    for headers in (device_auth, {}):
        assert overlord.client.get(path, headers=headers).status_code in (401, 403)
    assert overlord.client.delete(f"{path}/A", headers=viewer).status_code == 403


def test_deleting_a_group_deletes_its_variables(overlord: Overlord):
    admin = overlord.as_admin()
    overlord.client.put("/api/v1/groups/spare", json={}, headers=admin)
    _set(overlord, "/groups/spare/A", "1")
    assert overlord.client.delete("/api/v1/groups/spare", headers=admin).status_code == 204
    deleted = _audit(overlord)[-1]
    assert deleted.action == "group.delete" and deleted.before is not None
    assert deleted.before["config"] == ["A"]
    overlord.client.put("/api/v1/groups/spare", json={}, headers=admin)
    assert _api(overlord, "GET", "/groups/spare")["variables"] == []


def test_a_sealed_value_opens_only_with_its_key_in_its_place():
    sealer = sealing.Sealer.from_setting(KEY)
    sealed = sealer.seal(SECRET, binding="fleet/A")
    assert SECRET not in sealed and sealing.plaintext_bytes(sealed) == len(SECRET)
    assert sealer.open(sealed, binding="fleet/A") == SECRET
    assert sealer.seal(SECRET, binding="fleet/A") != sealed, "a fresh nonce each time"
    with pytest.raises(sealing.SecretUnreadable, match="fails authentication"):
        sealer.open(sealed, binding="group/x/A")
    other = sealing.Sealer.from_setting(sealing.new_key())
    wrong_key = f"OVERLORD_CONFIG_KEY is key {other.key_id}"
    with pytest.raises(sealing.SecretUnreadable, match=wrong_key):
        other.open(sealed, binding="fleet/A")
    for bad in ("short", "x" * 44, ""):
        with pytest.raises(ValueError, match="OVERLORD_CONFIG_KEY"):
            sealing.decode_key(bad)


def test_a_bad_config_key_setting_is_refused_without_echoing_it():
    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({"config_key": "not-a-key-but-a-secret-anyway"})
    assert "32 bytes" in str(refused.value)
    assert "not-a-key-but-a-secret-anyway" not in str(refused.value)
    assert Settings.model_validate({"config_key": ""}).config_key is None
    assert KEY not in repr(Settings.model_validate({"config_key": KEY}))


def test_the_device_page_shows_each_value_where_it_comes_from_and_no_secret(keyed: Overlord):
    device_id, auth = keyed.enroll("CFG5")
    admin = keyed.as_admin()
    keyed.client.put("/api/v1/groups/cameras", json={}, headers=admin)
    keyed.client.patch(f"/api/v1/devices/{device_id}", json={"group": "cameras"}, headers=admin)
    _set(keyed, "/fleet/CAMERA_FPS", "15")
    _set(keyed, "/groups/cameras/CAMERA_FPS", "25")
    _set(keyed, "/groups/cameras/RTSP_PASSWORD", SECRET, secret=True)
    _set(keyed, f"/devices/{device_id}/NOTE", "<b>bold</b>")
    browser = TestClient(keyed.client.app, base_url="http://overlord.test")
    login = browser.post("/dashboard/login", data={"token": keyed.token(KeyRole.VIEWER)})
    assert login.status_code == 200
    page = browser.get(f"/dashboard/devices/{device_id}").text
    table = page[page.index('id="config-table"') :]
    table = table[: table.index("</table>")]
    rows = [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]
    ]
    assert rows == [
        ["CAMERA_FPS", "25", "group/cameras", "fleet"],
        ["NOTE", "&lt;b&gt;bold&lt;/b&gt;", f"device/{device_id}", "—"],
        ["RTSP_PASSWORD", "***", "group/cameras", "—"],
    ]
    assert "not reported yet" in page and SECRET not in page
    state = keyed.client.get(f"/api/v1/devices/{device_id}/desired-state", headers=auth).json()
    beat = heartbeat() | {"config_digest": state["config_digest"]}
    keyed.client.post(f"/api/v1/devices/{device_id}/heartbeat", json=beat, headers=auth)
    live = browser.get(f"/dashboard/devices/{device_id}/timeline").text
    assert 'id="config-state">applied' in live and SECRET not in live
