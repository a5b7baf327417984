"""The audit log: every operator route records its change in the change's transaction, the
table refuses updates and deletes, secrets never reach it, and the read API filters and pages.
Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from fleetcore.logs import JsonLines
from overlord.audit import service as audit
from overlord.audit.models import AuditAction, AuditEntry, AuditObject, Channel
from overlord.audit.service import Actor
from overlord.auth.models import KeyRole
from overlord.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from overlord.errors import Conflict
from overlord.events.models import Alert, AlertKind
from overlord.rollouts import service as rollouts_service
from tests.overlord.conftest import Overlord
from tests.overlord.tufrepo import multipart, offline_release

# Mutating routes that are not operator actions: the device wire API (a device's own
# credential or an enrolment token; what devices report is stored as events, not audited).
DEVICE_ROUTES = frozenset(
    {
        ("POST", "/api/v1/devices/register"),
        ("POST", "/api/v1/devices/{device_id}/heartbeat"),
        ("POST", "/api/v1/devices/{device_id}/events"),
    }
)
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _entries(overlord: Overlord, after_id: int = 0) -> list[AuditEntry]:
    with unit_of_work(overlord.ctx.sessions) as session:
        query = select(AuditEntry).where(AuditEntry.id > after_id).order_by(AuditEntry.id)
        return list(session.scalars(query))


def _last_id(overlord: Overlord) -> int:
    entries = _entries(overlord)
    return entries[-1].id if entries else 0


def _browser(overlord: Overlord, token: str) -> tuple[TestClient, str]:
    """A dashboard session (logged in with ``token``) and its form token."""
    browser = TestClient(overlord.client.app, base_url="http://overlord.test")
    page = browser.post("/dashboard/login", data={"token": token})
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    return browser, match.group(1) if match else ""


def _rollout(overlord: Overlord, name: str) -> int:
    overlord.enroll(f"R-{name}")  # a rollout must target at least one device
    answer = overlord.client.post(
        "/api/v1/rollouts",
        json={"name": name, "kind": "os", "version": "1.1.0", "stages": [100]},
        headers=overlord.as_admin(),
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


@dataclass
class Walk:
    """State the steps share: the fleet's objects and a dashboard session."""

    overlord: Overlord
    device_id: str = ""
    rollout_id: int = 0
    token_id: int = 0
    alert_id: int = 0
    remote_session: str = ""
    browser: TestClient | None = None
    csrf: str = ""
    admin_key_id: int = 0
    seen: dict[str, int] = field(default_factory=dict)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.overlord.client.request(
            method, path, headers=self.overlord.as_admin(), **kwargs
        )

    def form(self, path: str, **data: str) -> httpx.Response:
        assert self.browser is not None
        return self.browser.post(path, data={"csrf": self.csrf, **data}, follow_redirects=False)


@dataclass(frozen=True)
class Step:
    route: tuple[str, str]
    actions: tuple[AuditAction, ...]
    send: Callable[[Walk], httpx.Response]
    via: Channel = Channel.API


def _login(walk: Walk) -> httpx.Response:
    walk.browser = TestClient(walk.overlord.client.app, base_url="http://overlord.test")
    answer = walk.browser.post(
        "/dashboard/login", data={"token": walk.overlord.admin}, follow_redirects=False
    )
    page = walk.browser.get("/dashboard")
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    walk.csrf = match.group(1) if match else ""
    return answer


def _create_rollout(walk: Walk) -> httpx.Response:
    walk.overlord.enroll("AUDIT-ROLLOUT")  # the first device is quarantined by now
    answer = walk.api(
        "POST", "/api/v1/rollouts", json={"name": "walk", "kind": "os", "version": "1.1.0"}
    )
    walk.rollout_id = answer.json()["id"]
    return answer


def _create_token(walk: Walk) -> httpx.Response:
    answer = walk.api("POST", "/api/v1/tokens", json={"role": "viewer", "name": "walked"})
    walk.token_id = answer.json()["id"]
    return answer


def _publish(walk: Walk) -> httpx.Response:
    upload = offline_release(walk.overlord.repo, "1.2.0")
    return walk.api("POST", "/api/v1/tuf/publish", files=multipart(upload))


def _create_and_delete_group(walk: Walk) -> httpx.Response:
    assert walk.api("PUT", "/api/v1/groups/spare", json={}).status_code == 200
    return walk.api("DELETE", "/api/v1/groups/spare")


def _config_path(route: str) -> Callable[[Walk], str]:
    def path(walk: Walk) -> str:
        return route.replace("{name}", "lab").replace("{device_id}", walk.device_id)

    return path


def _open_remote(walk: Walk) -> httpx.Response:
    answer = walk.api(
        "POST", f"/api/v1/devices/{walk.device_id}/remote-sessions", json={"kind": "logs"}
    )
    walk.remote_session = answer.json()["id"]
    return answer


def _config_steps() -> tuple[Step, ...]:
    """PATCH, PUT and DELETE at each level: set, then unset what was set."""
    steps: list[Step] = []
    for route in (
        "/api/v1/config/fleet",
        "/api/v1/config/groups/{name}",
        "/api/v1/config/devices/{device_id}",
    ):
        path = _config_path(route)

        def patch(w: Walk, path: Callable[[Walk], str] = path) -> httpx.Response:
            return w.api("PATCH", path(w), json={"set": {"A": {"value": "1"}}})

        def put(w: Walk, path: Callable[[Walk], str] = path) -> httpx.Response:
            return w.api("PUT", f"{path(w)}/B", json={"value": "2"})

        def delete(w: Walk, path: Callable[[Walk], str] = path) -> httpx.Response:
            return w.api("DELETE", f"{path(w)}/B")

        steps += [
            Step(("PATCH", route), (AuditAction.CONFIG_SET,), patch),
            Step(("PUT", f"{route}/{{key}}"), (AuditAction.CONFIG_SET,), put),
            Step(("DELETE", f"{route}/{{key}}"), (AuditAction.CONFIG_UNSET,), delete),
        ]
    return tuple(steps)


STEPS = (
    Step(
        ("PUT", "/api/v1/groups/{name}"),
        (AuditAction.GROUP_CREATE,),
        lambda w: w.api("PUT", "/api/v1/groups/lab", json={"description": "bench"}),
    ),
    Step(
        ("PATCH", "/api/v1/devices/{device_id}"),
        (AuditAction.DEVICE_LABELS, AuditAction.DEVICE_SAFE_MODE, AuditAction.DEVICE_GROUP),
        lambda w: w.api(
            "PATCH",
            f"/api/v1/devices/{w.device_id}",
            json={"labels": {"site": "lab"}, "group": "lab", "safe_mode": False},
        ),
    ),
    *_config_steps(),
    Step(
        ("PATCH", "/api/v1/devices/{device_id}/status"),
        (AuditAction.DEVICE_STATUS,),
        lambda w: w.api(
            "PATCH", f"/api/v1/devices/{w.device_id}/status", json={"status": "quarantined"}
        ),
    ),
    Step(
        ("POST", "/api/v1/devices/{device_id}/remote-sessions"),
        (AuditAction.REMOTE_OPEN,),
        _open_remote,
    ),
    Step(
        ("DELETE", "/api/v1/remote-sessions/{session_id}"),
        (AuditAction.REMOTE_END,),
        lambda w: w.api("DELETE", f"/api/v1/remote-sessions/{w.remote_session}"),
    ),
    Step(("POST", "/api/v1/rollouts"), (AuditAction.ROLLOUT_CREATE,), _create_rollout),
    Step(
        ("POST", "/api/v1/rollouts/{rollout_id}/pause"),
        (AuditAction.ROLLOUT_PAUSE,),
        lambda w: w.api("POST", f"/api/v1/rollouts/{w.rollout_id}/pause"),
    ),
    Step(
        ("POST", "/api/v1/rollouts/{rollout_id}/resume"),
        (AuditAction.ROLLOUT_RESUME,),
        lambda w: w.api("POST", f"/api/v1/rollouts/{w.rollout_id}/resume"),
    ),
    Step(("POST", "/dashboard/login"), (AuditAction.LOGIN,), _login, Channel.DASHBOARD),
    Step(
        ("POST", "/dashboard/rollouts/{rollout_id}/{action}"),
        (AuditAction.ROLLOUT_PAUSE,),
        lambda w: w.form(f"/dashboard/rollouts/{w.rollout_id}/pause"),
        Channel.DASHBOARD,
    ),
    Step(
        ("POST", "/dashboard/devices/{device_id}/status"),
        (AuditAction.DEVICE_STATUS,),
        lambda w: w.form(f"/dashboard/devices/{w.device_id}/status", status="active"),
        Channel.DASHBOARD,
    ),
    Step(
        ("POST", "/dashboard/devices/{device_id}/remote/{kind}"),
        (AuditAction.REMOTE_OPEN,),
        lambda w: w.form(f"/dashboard/devices/{w.device_id}/remote/shell"),
        Channel.DASHBOARD,
    ),
    Step(
        ("POST", "/dashboard/rollouts"),
        (AuditAction.ROLLOUT_CREATE,),
        lambda w: w.form("/dashboard/rollouts", release="role/camera/2.0.0", name="dash"),
        Channel.DASHBOARD,
    ),
    Step(
        ("POST", "/api/v1/rollouts/{rollout_id}/abort"),
        (AuditAction.ROLLOUT_ABORT,),
        lambda w: w.api("POST", f"/api/v1/rollouts/{w.rollout_id}/abort"),
    ),
    Step(("POST", "/api/v1/tokens"), (AuditAction.TOKEN_CREATE,), _create_token),
    Step(
        ("DELETE", "/api/v1/tokens/{key_id}"),
        (AuditAction.TOKEN_REVOKE,),
        lambda w: w.api("DELETE", f"/api/v1/tokens/{w.token_id}"),
    ),
    Step(
        ("PUT", "/api/v1/alert-rules/{kind}"),
        (AuditAction.ALERT_RULE_SET,),
        lambda w: w.api("PUT", "/api/v1/alert-rules/safe-mode", json={"enabled": False}),
    ),
    Step(
        ("POST", "/api/v1/alerts/{alert_id}/resolve"),
        (AuditAction.ALERT_RESOLVE,),
        lambda w: w.api("POST", f"/api/v1/alerts/{w.alert_id}/resolve"),
    ),
    Step(("POST", "/api/v1/tuf/publish"), (AuditAction.RELEASE_PUBLISH,), _publish),
    Step(
        ("POST", "/api/v1/releases/gc"),
        (AuditAction.RELEASE_GC,),
        lambda w: w.api("POST", "/api/v1/releases/gc", json={"keep_last": 1}),
    ),
    Step(
        ("DELETE", "/api/v1/groups/{name}"),
        (AuditAction.GROUP_CREATE, AuditAction.GROUP_DELETE),
        _create_and_delete_group,
    ),
    Step(
        ("POST", "/dashboard/logout"),
        (AuditAction.LOGOUT,),
        lambda w: w.form("/dashboard/logout"),
        Channel.DASHBOARD,
    ),
)


def _mutating_routes(overlord: Overlord) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in overlord.app.routes
        if isinstance(route, APIRoute)
        for method in (route.methods or set()) & WRITES
    }


def _seed_alert(overlord: Overlord) -> int:
    with unit_of_work(overlord.ctx.sessions) as session:
        alert = Alert(kind=AlertKind.SAFE_MODE, subject="device/x", message="safe mode")
        session.add(alert)
        session.flush()
        return alert.id


def test_every_operator_route_records_an_audit_entry(overlord: Overlord):
    """Walks the app's routes: a mutating route that is neither a device route nor walked
    here fails the test, and each walked route must leave its entries, attributed."""
    walked = {step.route for step in STEPS}
    unlisted = _mutating_routes(overlord) - walked - DEVICE_ROUTES
    assert not unlisted, (
        f"mutating routes without an audit step: {sorted(unlisted)}; record their change "
        "(overlord.audit.service.record) and add a Step, or list a device route above"
    )
    assert not walked & DEVICE_ROUTES
    walk = Walk(overlord)
    walk.device_id, _auth = overlord.enroll("AUDIT1")
    walk.alert_id = _seed_alert(overlord)
    allowed = walk.api("PUT", "/api/v1/config/fleet/FLEET_REMOTE_SHELL", json={"value": "1"})
    assert allowed.status_code == 200, allowed.text  # for the dashboard's Open shell
    (admin,) = _admin_keys(overlord)
    for step in STEPS:
        before = _last_id(overlord)
        answer = step.send(walk)
        assert answer.status_code < 400, (step.route, answer.status_code, answer.text)
        made = _entries(overlord, before)
        assert tuple(e.action for e in made) == step.actions, step.route
        for entry in made:
            assert (entry.actor_key_id, entry.actor_role) == (admin, "admin"), step.route
            assert entry.actor_name == "test admin" and entry.via == step.via.value
            assert entry.source == "testclient" and entry.request_id
    entries = _entries(overlord)
    by_action = {e.action: e for e in entries}
    assert by_action["device.labels"].before == {"labels": {}}
    assert by_action["device.labels"].after == {"labels": {"site": "lab"}}
    assert by_action["rollout.pause"].after is not None
    assert by_action["rollout.pause"].after["state"] == "paused"
    assert by_action["group.delete"].before is not None and by_action["group.delete"].after is None
    assert by_action["config.unset"].object_id == f"device/{walk.device_id}"
    assert by_action["config.unset"].before == {"values": {"B": "2"}, "masked": []}
    published = by_action["release.publish"].after
    assert published is not None and "os/1.2.0/manifest.json" in published["added_targets"]


def _admin_keys(overlord: Overlord) -> list[int]:
    with unit_of_work(overlord.ctx.sessions) as session:
        rows = session.execute(text("SELECT id FROM api_keys WHERE role = 'admin'"))
        return [row[0] for row in rows]


def test_a_refused_change_records_nothing(overlord: Overlord):
    rollout_id = _rollout(overlord, "refused")
    pause = f"/api/v1/rollouts/{rollout_id}/pause"
    assert overlord.client.post(pause, headers=overlord.as_admin()).status_code == 200
    before = _last_id(overlord)
    again = overlord.client.post(pause, headers=overlord.as_admin())
    assert again.status_code == 409 and _entries(overlord, before) == []
    device_id, _auth = overlord.enroll("AUDIT2")
    admin = overlord.as_admin()
    overlord.client.put("/api/v1/groups/busy", json={}, headers=admin)
    overlord.client.patch(f"/api/v1/devices/{device_id}", json={"group": "busy"}, headers=admin)
    before = _last_id(overlord)
    busy = overlord.client.delete("/api/v1/groups/busy", headers=admin)
    assert busy.status_code == 409 and _entries(overlord, before) == []
    missing = overlord.client.patch(
        f"/api/v1/devices/{device_id}", json={"labels": {"a": "b"}, "group": "nope"}, headers=admin
    )
    assert missing.status_code == 404 and _entries(overlord, before) == []
    labels = overlord.client.get(f"/api/v1/devices/{device_id}", headers=admin).json()["labels"]
    assert labels == {}, "the labels set before the refusal were rolled back too"


def test_a_change_that_fails_after_its_entry_takes_the_entry_with_it(
    overlord: Overlord, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """The entry is in the change's transaction: a failure after it (here, answering the
    pause) rolls both back, and no audit line is logged for the change that never was."""
    rollout_id = _rollout(overlord, "rolled-back")
    before = _last_id(overlord)

    def fail(*_args: object) -> None:
        raise Conflict("injected after the change and its entry")

    monkeypatch.setattr(rollouts_service, "to_public", fail)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="overlord.audit"):
        answer = overlord.client.post(
            f"/api/v1/rollouts/{rollout_id}/pause", headers=overlord.as_admin()
        )
    assert answer.status_code == 409, answer.text
    monkeypatch.undo()
    assert _entries(overlord, before) == []
    assert not [r for r in caplog.records if r.name == "overlord.audit"]
    state = overlord.client.get(f"/api/v1/rollouts/{rollout_id}", headers=overlord.as_admin())
    assert state.json()["state"] == "running"


def _write_one(url: str) -> int:
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            actor = Actor(1, "ops", KeyRole.ADMIN, "192.0.2.7", Channel.API)
            entry = audit.record(
                session, actor, AuditAction.GROUP_CREATE, object_type=AuditObject.GROUP
            )
            return entry.id
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET action = 'group.delete' WHERE id = :id", "DELETE FROM audit_log"],
)
def test_the_table_refuses_updates_and_deletes(database_url: str, statement: str):
    entry_id = _write_one(database_url)
    engine = make_engine(database_url)
    try:
        with pytest.raises(DBAPIError) as refused, engine.begin() as conn:
            conn.execute(text(statement), {"id": entry_id})
        assert "audit_log is append-only" in str(refused.value)
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT action FROM audit_log WHERE id = :id"), {"id": entry_id}
            )
            assert row.scalar_one() == "group.create"
    finally:
        engine.dispose()


def test_secrets_are_masked_and_never_stored(overlord: Overlord, caplog: pytest.LogCaptureFixture):
    assert audit.masked(
        {"token": "t", "nested": [{"token_hash": "h", "Password": "p", "device-token": "d"}]}
    ) == {
        "nested": [{"Password": "***", "device-token": "***", "token_hash": "***"}],
        "token": "***",
    }
    labels = {"hashrate": "12", "secret_zone": "b", "tokens": "3"}
    assert audit.masked({"labels": labels}) == {"labels": labels}, "words inside names stay"
    with caplog.at_level(logging.INFO, logger="overlord.audit"):
        created = overlord.client.post(
            "/api/v1/tokens",
            json={"role": "operator", "name": "laptop"},
            headers=overlord.as_admin(),
        )
        token = created.json()["token"]
        _browser(overlord, token)
        failed = TestClient(overlord.client.app).post("/dashboard/login", data={"token": "mfa_x"})
        assert failed.status_code == 401
    with unit_of_work(overlord.ctx.sessions) as session:
        stored = repr(session.execute(text("SELECT * FROM audit_log")).all())
        token_hash = session.execute(text("SELECT token_hash FROM api_keys")).scalars().all()
    assert "laptop" in stored and "dashboard.login_failed" in stored
    lines = "\n".join(JsonLines().format(r) for r in caplog.records)
    for secret in (token, "mfa_x", *token_hash):
        assert secret not in stored and secret not in lines


def test_each_entry_is_one_structured_log_line(
    overlord: Overlord, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.INFO, logger="overlord.audit"):
        overlord.client.put(
            "/api/v1/groups/cams", json={"description": "d"}, headers=overlord.as_admin()
        )
    (record,) = [r for r in caplog.records if r.name == "overlord.audit"]
    line = json.loads(JsonLines().format(record))
    assert line["logger"] == "overlord.audit" and line["level"] == "info"
    assert line["action"] == "group.create" and line["object"] == "group/cams"
    assert line["actor_name"] == "test admin" and line["actor_role"] == "admin"
    assert line["source"] == "testclient" and line["via"] == "api"
    assert line["before"] is None and json.loads(line["after"])["description"] == "d"
    assert line["audit_id"] == _last_id(overlord) and line["request_id"]


def test_the_read_api_filters_and_pages(overlord: Overlord):
    admin = overlord.as_admin()
    operator = overlord.token(KeyRole.OPERATOR)
    as_operator = {"Authorization": f"Bearer {operator}"}
    for name in ("a", "b", "c"):
        overlord.client.put(f"/api/v1/groups/{name}", json={}, headers=admin)
    overlord.client.put("/api/v1/groups/a", json={"description": "x"}, headers=as_operator)
    rollout_id = _rollout(overlord, "read")

    def read(token: dict[str, str] = admin, **params: Any) -> Any:
        answer = overlord.client.get("/api/v1/audit", params=params, headers=token)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def actions(**params: Any) -> list[str]:
        return [
            f"{i['action']} {i['object_type']}/{i['object_id']}" for i in read(**params)["items"]
        ]

    assert actions() == [
        f"rollout.create rollout/{rollout_id}",
        "group.update group/a",
        "group.create group/c",
        "group.create group/b",
        "group.create group/a",
    ]
    assert actions(actor="test operator") == ["group.update group/a"]
    operator_id = _entries(overlord)[-2].actor_key_id
    assert actions(actor=str(operator_id)) == ["group.update group/a"]
    assert actions(action="group.create") == [
        "group.create group/c",
        "group.create group/b",
        "group.create group/a",
    ]
    assert actions(object="group/a") == ["group.update group/a", "group.create group/a"]
    assert actions(object="rollout") == [f"rollout.create rollout/{rollout_id}"]
    last = _entries(overlord)[-1].at
    assert actions(since=last.isoformat()) == [f"rollout.create rollout/{rollout_id}"]
    assert f"rollout.create rollout/{rollout_id}" not in actions(until=last.isoformat())
    assert actions(until=(last - timedelta(days=1)).isoformat()) == []

    first = read(limit=2)
    assert [i["action"] for i in first["items"]] == ["rollout.create", "group.update"]
    second = read(limit=2, cursor=first["next_cursor"])
    third = read(limit=2, cursor=second["next_cursor"])
    assert len(third["items"]) == 1 and third["next_cursor"] is None
    assert read(token=as_operator)["items"], "operators read the audit log"

    viewer = {"Authorization": f"Bearer {overlord.token(KeyRole.VIEWER)}"}
    assert overlord.client.get("/api/v1/audit", headers=viewer).status_code == 403
    for bad in (
        {"limit": 501},
        {"limit": 0},
        {"object": "planet/earth"},
        {"action": "rollout.explode"},
        {"since": "2025-01-01T00:00:00"},  # no zone
        {"cursor": 2**63},
        {"actor": "\x00"},
    ):
        assert overlord.client.get("/api/v1/audit", params=bad, headers=admin).status_code == 422


def test_entries_stay_as_written_when_their_key_is_revoked(overlord: Overlord):
    """No foreign keys: a revoked key's entries stay as written (the row holds its name)."""
    created = overlord.client.post(
        "/api/v1/tokens", json={"role": "operator", "name": "temp"}, headers=overlord.as_admin()
    ).json()
    token = {"Authorization": f"Bearer {created['token']}"}
    overlord.client.put("/api/v1/groups/t", json={}, headers=token)
    overlord.client.delete(f"/api/v1/tokens/{created['id']}", headers=overlord.as_admin())
    entry = overlord.client.get(
        "/api/v1/audit", params={"actor": "temp"}, headers=overlord.as_admin()
    ).json()["items"][0]
    assert entry["action"] == "group.create" and entry["actor_key_id"] == created["id"]
    revoked = _entries(overlord)[-1]
    assert revoked.action == "token.revoke" and revoked.after is not None
    assert revoked.after["revoked_at"] is not None and revoked.before is not None
    assert revoked.before["revoked_at"] is None
    assert utcnow() - revoked.at < timedelta(minutes=5)
