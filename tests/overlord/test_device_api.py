"""Contract tests: the device side's own wire models (fleetcore.wire) against the server."""

from __future__ import annotations

import psycopg
import pytest

from fleetcore.wire import DesiredState, EventAck, EventKind, RoleStatus, UpdateState
from overlord.auth.models import KeyRole
from overlord.devices.pgbatch import BatchConnections
from tests.overlord.conftest import Overlord, events, heartbeat, make_overlord
from tests.overlord.tufrepo import Repo


def test_register_issues_a_device_scoped_credential(overlord: Overlord):
    device_id, auth = overlord.enroll("SER1")
    other_id, _other_auth = overlord.enroll("SER2")
    assert (
        overlord.client.post(
            f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(), headers=auth
        ).status_code
        == 204
    )
    denied = overlord.client.post(
        f"/api/v1/devices/{other_id}/heartbeat", json=heartbeat(), headers=auth
    )
    assert denied.status_code == 403
    assert overlord.client.get("/api/v1/devices", headers=auth).status_code == 403


def test_register_rejects_unknown_and_non_enrollment_tokens(overlord: Overlord):
    body: dict[str, object] = {
        "enrollment_token": overlord.token(KeyRole.VIEWER),
        "hostname": "pi",
        "hardware": "pi4",
        "image_version": "1.0.0",
        "booted_slot": "a",
    }
    assert overlord.client.post("/api/v1/devices/register", json=body).status_code == 401
    body["enrollment_token"] = "mfe_nope"
    assert overlord.client.post("/api/v1/devices/register", json=body).status_code == 401
    body["unexpected"] = 1
    assert overlord.client.post("/api/v1/devices/register", json=body).status_code == 422


def test_reenrolling_a_serial_keeps_the_id_and_revokes_the_old_credential(overlord: Overlord):
    first_id, first_auth = overlord.enroll("SER9")
    second_id, second_auth = overlord.enroll("SER9")
    assert first_id == second_id
    url = f"/api/v1/devices/{first_id}/heartbeat"
    assert overlord.client.post(url, json=heartbeat(), headers=second_auth).status_code == 204
    # The old token may still sit in this replica's short credential cache: drop it.
    overlord.ctx.principals.clear()
    assert overlord.client.post(url, json=heartbeat(), headers=first_auth).status_code == 401


def test_heartbeat_updates_the_registry(overlord: Overlord):
    device_id, auth = overlord.enroll("SER3")
    hb = heartbeat(
        "1.1.0",
        state=UpdateState.COMMITTED,
        roles=[RoleStatus(name="camera", version="2.0.0", health="healthy")],  # type: ignore[arg-type]
    )
    assert (
        overlord.client.post(
            f"/api/v1/devices/{device_id}/heartbeat", json=hb, headers=auth
        ).status_code
        == 204
    )
    device = overlord.client.get(f"/api/v1/devices/{device_id}", headers=overlord.as_admin()).json()
    assert device["image_version"] == "1.1.0"
    assert device["status"] == "online"
    assert device["roles"][0]["name"] == "camera"
    bad = dict(hb, surprise=True)
    assert (
        overlord.client.post(
            f"/api/v1/devices/{device_id}/heartbeat", json=bad, headers=auth
        ).status_code
        == 422
    )


def test_desired_state_has_an_etag_and_answers_304(overlord: Overlord):
    device_id, auth = overlord.enroll("SER4")
    url = f"/api/v1/devices/{device_id}/desired-state"
    first = overlord.client.get(url, headers=auth)
    assert first.status_code == 200
    state = DesiredState.model_validate(first.json())
    assert state.os is None and state.poll_interval_s == overlord.settings.poll_interval_s
    etag = first.headers["etag"]
    again = overlord.client.get(url, headers=auth | {"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag
    overlord.client.put(
        "/api/v1/groups/lab", json={"poll_interval_s": 30}, headers=overlord.as_admin()
    )
    overlord.client.patch(
        f"/api/v1/devices/{device_id}", json={"group": "lab"}, headers=overlord.as_admin()
    )
    changed = overlord.client.get(url, headers=auth | {"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert DesiredState.model_validate(changed.json()).poll_interval_s == 30


def test_events_are_deduplicated_by_sequence_number(overlord: Overlord):
    device_id, auth = overlord.enroll("SER5")
    url = f"/api/v1/devices/{device_id}/events"
    batch = events(
        (1, EventKind.INSTALL_STARTED, "1.1.0", None),
        (2, EventKind.ROLLBACK, "1.1.0", "health check failed: docker"),
    )
    ack = EventAck.model_validate(overlord.client.post(url, json=batch, headers=auth).json())
    assert (ack.accepted, ack.last_seq) == (2, 2)
    again = EventAck.model_validate(
        overlord.client.post(
            url,
            json=events((2, EventKind.ROLLBACK, "1.1.0", "x"), (3, EventKind.ENROLLED, None, None)),
            headers=auth,
        ).json()
    )
    assert (again.accepted, again.last_seq) == (1, 3)
    listed = overlord.client.get(url, headers=overlord.as_admin()).json()
    assert listed["total"] == 3
    assert [e["seq"] for e in listed["items"]] == [3, 2, 1]
    assert listed["items"][1]["reason"] == "health check failed: docker"
    alerts = overlord.client.get("/api/v1/alerts?open=true", headers=overlord.as_admin()).json()
    assert any(a["kind"] == "device-rolled-back" and "docker" in a["message"] for a in alerts)


def test_missing_or_bogus_credentials_are_401(overlord: Overlord):
    device_id, _auth = overlord.enroll("SER6")
    url = f"/api/v1/devices/{device_id}/desired-state"
    assert overlord.client.get(url).status_code == 401
    assert (
        overlord.client.get(url, headers={"Authorization": "Bearer mfd_bogus"}).status_code == 401
    )


def test_decommissioning_revokes_the_device(overlord: Overlord):
    device_id, auth = overlord.enroll("SER7")
    resp = overlord.client.patch(
        f"/api/v1/devices/{device_id}/status",
        json={"status": "decommissioned"},
        headers=overlord.as_admin(),
    )
    assert resp.status_code == 200 and resp.json()["admin_status"] == "decommissioned"
    overlord.ctx.principals.clear()
    assert (
        overlord.client.post(
            f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(), headers=auth
        ).status_code
        == 401
    )


def test_prometheus_discovery_lists_reported_node_exporters(database_url: str, repo: Repo):
    # The test client connects from no IP address: the exporter's network is approved.
    overlord = make_overlord(database_url, repo, exporter_networks="10.8.0.0/16")
    device_id, auth = overlord.enroll("SD1")
    quiet_id, quiet_auth = overlord.enroll("SD2")
    hb = heartbeat() | {"node_exporter": "10.8.0.5:9100"}
    assert (
        overlord.client.post(
            f"/api/v1/devices/{device_id}/heartbeat", json=hb, headers=auth
        ).status_code
        == 204
    )
    overlord.client.post(
        f"/api/v1/devices/{quiet_id}/heartbeat", json=heartbeat(), headers=quiet_auth
    )
    resp = overlord.client.get("/api/v1/sd/prometheus", headers=overlord.as_admin())
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert resp.json() == [
        {
            "targets": ["10.8.0.5:9100"],
            "labels": {
                "__meta_fleet_device_id": device_id,
                "__meta_fleet_hardware": "pi4",
                "__meta_fleet_group": "",
            },
        }
    ]
    assert overlord.client.get("/api/v1/sd/prometheus", headers=auth).status_code == 403


def test_operator_can_request_safe_mode(overlord: Overlord):
    device_id, auth = overlord.enroll("SM1")
    url = f"/api/v1/devices/{device_id}/desired-state"
    assert (
        DesiredState.model_validate(overlord.client.get(url, headers=auth).json()).safe_mode
        is False
    )
    resp = overlord.client.patch(
        f"/api/v1/devices/{device_id}", json={"safe_mode": True}, headers=overlord.as_admin()
    )
    assert resp.status_code == 200 and resp.json()["desired_safe_mode"] is True
    assert (
        DesiredState.model_validate(overlord.client.get(url, headers=auth).json()).safe_mode is True
    )


def test_cached_desired_state_follows_the_change_log(database_url, repo):
    """A replica answering from memory still sees a change another replica made."""
    from tests.overlord.conftest import make_overlord

    replica = make_overlord(database_url, repo, cache_ttl_s=3600, change_poll_s=60)
    other = make_overlord(database_url, repo, cache_ttl_s=3600, change_poll_s=60)
    keeper = replica.ctx.keeper
    with replica.client, other.client:
        device_id, auth = replica.enroll("CL1")
        url = f"/api/v1/devices/{device_id}/desired-state"
        first = replica.client.get(url, headers=auth)
        assert (
            replica.client.get(
                url, headers=auth | {"If-None-Match": first.headers["etag"]}
            ).status_code
            == 304
        )
        other.client.put(
            "/api/v1/groups/fast", json={"poll_interval_s": 15}, headers=other.as_admin()
        )
        other.client.patch(
            f"/api/v1/devices/{device_id}", json={"group": "fast"}, headers=other.as_admin()
        )
        keeper.catch_up()  # what its thread does every change_poll_s
        changed = replica.client.get(url, headers=auth | {"If-None-Match": first.headers["etag"]})
        assert changed.status_code == 200
        assert DesiredState.model_validate(changed.json()).poll_interval_s == 15
        etag = changed.headers["etag"]
        other.client.put(
            "/api/v1/groups/fast", json={"poll_interval_s": 20}, headers=other.as_admin()
        )
        keeper.catch_up()
        again = replica.client.get(url, headers=auth | {"If-None-Match": etag})
        assert again.status_code == 200
        assert DesiredState.model_validate(again.json()).poll_interval_s == 20


def test_labels_filters_and_pagination(overlord: Overlord):
    ids = [overlord.enroll(f"LB{i}", hostname=f"pi-{i}")[0] for i in range(5)]
    admin = overlord.as_admin()
    for device_id in ids[:3]:
        assert (
            overlord.client.patch(
                f"/api/v1/devices/{device_id}", json={"labels": {"site": "north"}}, headers=admin
            ).status_code
            == 200
        )
    overlord.client.patch(
        f"/api/v1/devices/{ids[3]}", json={"labels": {"site": "south"}}, headers=admin
    )
    assert overlord.client.get("/api/v1/labels", headers=admin).json() == [
        {"key": "site", "value": "north", "devices": 3},
        {"key": "site", "value": "south", "devices": 1},
    ]
    north = overlord.client.get("/api/v1/devices?label=site=north&limit=2", headers=admin).json()
    assert north["total"] == 3 and len(north["items"]) == 2
    rest = overlord.client.get(
        "/api/v1/devices?label=site=north&limit=2&offset=2", headers=admin
    ).json()
    assert len(rest["items"]) == 1
    assert overlord.client.get("/api/v1/devices?status=offline", headers=admin).json()["total"] == 0
    assert overlord.client.get("/api/v1/devices?status=online", headers=admin).json()["total"] == 5
    assert (
        overlord.client.get("/api/v1/devices?image_version=1.0.0", headers=admin).json()["total"]
        == 5
    )
    assert overlord.client.get("/api/v1/devices?role=camera", headers=admin).json()["total"] == 0


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_heartbeat_batch_rolled_back_by_the_server_is_retried(overlord: Overlord, monkeypatch):
    real = BatchConnections.store
    failures = [psycopg.errors.DeadlockDetected("deadlock detected")]

    async def flaky(self, items, now):
        if failures:
            raise failures.pop()
        return await real(self, items, now)

    monkeypatch.setattr(BatchConnections, "store", flaky)
    device_id, auth = overlord.enroll("RETRY1")
    resp = overlord.client.post(
        f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(), headers=auth
    )
    assert resp.status_code == 204 and failures == []
