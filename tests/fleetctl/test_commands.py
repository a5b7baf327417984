"""devices, groups, tokens and releases list/gc through the fleetctl process."""

from __future__ import annotations

from overlord.auth.models import KeyRole
from tests.fleetctl.conftest import Fleet, one_line_error


def test_devices_list_show_label_move_group_and_status(fleet: Fleet):
    first = fleet.enroll("DEV001")
    second = fleet.enroll("DEV002")
    page = fleet.json("devices", "list")
    assert page["total"] == 2 and {d["id"] for d in page["items"]} == {first, second}
    table = fleet.ok("devices", "list")
    assert table.splitlines()[0].split()[:3] == ["ID", "HOSTNAME", "HARDWARE"]
    assert "dev001" in table and "dev002" in table

    assert fleet.json("devices", "show", first)["hostname"] == "dev001"
    assert "image_version" in fleet.ok("devices", "show", first)

    fleet.ok("devices", "label", first, "site=lab", "rack=r1")
    assert fleet.json("devices", "label", first, "rack=r2")["labels"] == {
        "site": "lab",
        "rack": "r2",
    }
    assert fleet.json("devices", "label", first, "--remove", "rack")["labels"] == {"site": "lab"}
    assert [d["id"] for d in fleet.json("devices", "list", "--label", "site=lab")["items"]] == [
        first
    ]

    fleet.ok("groups", "create", "cameras", "--window", "22:00-04:00", "--poll-interval", "30")
    assert fleet.json("devices", "move-group", first, "cameras")["group"] == "cameras"
    groups = fleet.json("groups", "list")
    assert groups == [
        {
            "name": "cameras",
            "description": "",
            "window_start": "22:00:00",
            "window_end": "04:00:00",
            "poll_interval_s": 30,
            "devices": 1,
        }
    ]
    assert [d["id"] for d in fleet.json("devices", "list", "--group", "cameras")["items"]] == [
        first
    ]
    assert fleet.json("devices", "move-group", first, "--none")["group"] is None

    status = fleet.json("devices", "set-status", second, "quarantined")
    assert status["admin_status"] == "quarantined"


def test_groups_create_refuses_an_existing_group_and_delete_removes_it(fleet: Fleet):
    fleet.ok("groups", "create", "lab", "--description", "bench units")
    again = fleet.run("groups", "create", "lab", "--window", "01:00-02:00")
    assert "already exists" in one_line_error(again)
    assert fleet.json("groups", "list")[0]["window_start"] is None, "the first one is intact"
    assert fleet.json("groups", "delete", "lab") == {"deleted": "lab"}
    assert fleet.json("groups", "list") == []
    assert "no device group lab" in one_line_error(fleet.run("groups", "delete", "lab"))
    window = fleet.run("groups", "create", "w", "--window", "01:00")
    assert "HH:MM-HH:MM" in one_line_error(window, code=2)


def test_tokens_create_list_revoke(fleet: Fleet):
    created = fleet.json("tokens", "create", "--role", "viewer", "--name", "ci reader")
    token = created["token"]
    listed = fleet.ok("tokens", "list")
    assert "ci reader" in listed and token not in listed
    assert any(k["id"] == created["id"] for k in fleet.json("tokens", "list"))
    assert fleet.json("devices", "list", token=token)["total"] == 0

    shown_once = fleet.ok("tokens", "create", "--role", "operator", "--expires-in", "3600")
    assert "shown once" in shown_once

    assert fleet.json("tokens", "revoke", str(created["id"])) == {"revoked": created["id"]}
    revoked = [k for k in fleet.json("tokens", "list") if k["id"] == created["id"]]
    assert revoked[0]["revoked_at"] is not None
    assert "the token was refused" in one_line_error(fleet.run("devices", "list", token=token))

    operator = fleet.token(KeyRole.OPERATOR)
    escalate = fleet.run("tokens", "create", "--role", "admin", token=operator)
    assert "admin role" in one_line_error(escalate)


def test_releases_list_and_gc(fleet: Fleet):
    releases = fleet.json("releases", "list")
    assert {(r["kind"], r["version"]) for r in releases} == {("os", "1.0.0"), ("os", "1.1.0")}
    assert "1.1.0" in fleet.ok("releases", "list", "--kind", "os")
    assert fleet.json("releases", "list", "--kind", "role") == []

    dry = fleet.json("releases", "gc", "--dry-run")
    assert dry["dry_run"] is True and dry["kept_releases"]
    assert "would delete" in fleet.ok("releases", "gc", "--dry-run", "--keep", "1")
    viewer = fleet.token(KeyRole.VIEWER)
    assert "admin role" in one_line_error(fleet.run("releases", "gc", token=viewer))


def test_devices_rotate_credential(fleet: Fleet):
    device = fleet.enroll("DEVROT")
    rotated = fleet.json("devices", "rotate-credential", device)
    assert rotated["id"] == device and rotated["key_fingerprint"] is None
    assert "key_fingerprint" in fleet.ok("devices", "show", device)
