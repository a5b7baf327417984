"""``fleetctl audit list`` against a real Overlord: what other fleetctl commands did, who did
it from where, filtered and paged; on SQLite and PostgreSQL, and its log lines from
``overlord serve`` itself."""

from __future__ import annotations

import json

import httpx
import pytest

from overlord.auth.models import KeyRole
from tests.fleetctl.conftest import Fleet, one_line_error

ADMIN_NAME = "fleetctl test admin"


def _act(fleet: Fleet) -> tuple[str, int, str]:
    """Six audited changes through fleetctl; returns the device, the rollout and a token."""
    device = fleet.enroll("AUD001")
    fleet.ok("groups", "create", "cams")
    fleet.ok("devices", "label", device, "site=lab")
    fleet.ok("devices", "move-group", device, "cams")
    rollout = fleet.json("rollouts", "create", "spring", "--kind", "os", "--version", "1.1.0")
    fleet.ok("rollouts", "pause", str(rollout["id"]))
    token = fleet.json("tokens", "create", "--role", "operator", "--name", "laptop")["token"]
    return device, int(rollout["id"]), token


def _audit_list_and_filters(fleet: Fleet) -> None:
    device, rollout_id, token = _act(fleet)
    page = fleet.json("audit", "list")
    assert [e["action"] for e in page["items"]] == [
        "token.create",
        "rollout.pause",
        "rollout.create",
        "device.group",
        "device.labels",
        "group.create",
    ]
    assert page["next_cursor"] is None
    for entry in page["items"]:
        assert (entry["actor_name"], entry["actor_role"]) == (ADMIN_NAME, "admin")
        assert entry["source"] == "127.0.0.1" and entry["via"] == "api"
    assert token not in json.dumps(page), "a new token is never recorded"

    table = fleet.ok("audit", "list")
    header = table.splitlines()[0].split()
    assert header == ["ID", "AT", "ACTOR", "ROLE", "SOURCE", "VIA", "ACTION", "OBJECT", "CHANGE"]
    assert f"rollout/{rollout_id}" in table and "state: running -> paused" in table
    assert 'labels: {} -> {"site":"lab"}' in table and "group: null -> cams" in table

    def actions(*options: str) -> list[str]:
        return [e["action"] for e in fleet.json("audit", "list", *options)["items"]]

    assert actions("--action", "rollout.pause") == ["rollout.pause"]
    assert actions("--object", f"device/{device}") == ["device.group", "device.labels"]
    assert actions("--object", "rollout") == ["rollout.pause", "rollout.create"]
    assert len(actions("--actor", ADMIN_NAME)) == 6 and actions("--actor", "laptop") == []
    assert len(actions("--since", "1h")) == 6 and actions("--until", "1h") == []
    assert actions("--until", "2000-01-01") == [], "a time without a zone is UTC"
    assert len(actions("--since", "2000-01-01T00:00:00+02:00")) == 6

    first = fleet.ok("audit", "list", "--limit", "4")
    cursor = first.strip().splitlines()[-1].rsplit(" ", 1)[-1]
    assert "older entries: add --cursor" in first and cursor.isdigit()
    assert actions("--limit", "4", "--cursor", cursor) == ["device.labels", "group.create"]

    operator = fleet.token(KeyRole.OPERATOR)
    proxied = httpx.put(
        f"{fleet.url}/api/v1/groups/forwarded",
        json={},
        headers={"Authorization": f"Bearer {operator}", "X-Forwarded-For": "203.0.113.9"},
    )
    assert proxied.status_code == 200, proxied.text
    (latest,) = fleet.json("audit", "list", "--limit", "1", token=operator)["items"]
    assert latest["source"] == "203.0.113.9", "the address the trusted proxy forwarded"
    assert (latest["actor_name"], latest["actor_role"]) == ("fleetctl test operator", "operator")


def test_audit_list_shows_who_did_what(fleet: Fleet):
    _audit_list_and_filters(fleet)


@pytest.mark.integration
def test_audit_list_on_postgresql(pg_fleet: Fleet):
    _audit_list_and_filters(pg_fleet)


def test_audit_list_refusals_are_one_line(fleet: Fleet):
    viewer = fleet.token(KeyRole.VIEWER)
    assert "operator role" in one_line_error(fleet.run("audit", "list", token=viewer))
    assert "--since" in one_line_error(fleet.run("audit", "list", "--since", "yesterday"), 2)
    assert "action" in one_line_error(fleet.run("audit", "list", "--action", "rollout.explode"))
    assert "limit" in one_line_error(fleet.run("audit", "list", "--limit", "501"))


def test_each_change_is_one_json_log_line_of_overlord_serve(served_fleet: Fleet):
    _device, rollout_id, token = _act(served_fleet)
    log = (served_fleet.home.parent / "overlord.log").read_text()
    lines = [json.loads(line) for line in log.splitlines() if '"overlord.audit"' in line]
    assert [line["action"] for line in lines] == [
        "group.create",
        "device.labels",
        "device.group",
        "rollout.create",
        "rollout.pause",
        "token.create",
    ]
    pause = lines[4]
    assert pause["object"] == f"rollout/{rollout_id}" and pause["actor_name"] == ADMIN_NAME
    assert json.loads(pause["after"])["state"] == "paused" and pause["request_id"]
    assert token not in log and served_fleet.admin not in log
