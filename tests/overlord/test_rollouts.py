"""Rollouts end to end through the API, with the engine ticked by hand."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event

from fleetcore.wire import DesiredState, EventKind, UpdateState
from overlord.db import unit_of_work, utcnow
from overlord.rollouts import service as rollouts_service
from tests.overlord.conftest import Overlord, events, heartbeat


def _tick(overlord: Overlord, *, later_s: float = 0) -> None:
    ctx = overlord.ctx
    with unit_of_work(ctx.sessions) as session:
        rollouts_service.tick(session, now=utcnow() + timedelta(seconds=later_s))


def _fleet(overlord: Overlord, count: int) -> dict[str, dict[str, str]]:
    fleet = {}
    for i in range(count):
        device_id, auth = overlord.enroll(f"RS{i:03d}", hostname=f"pi-{i:03d}")
        overlord.client.post(
            f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(), headers=auth
        )
        fleet[device_id] = auth
    return fleet


def _desired(overlord: Overlord, device_id: str, auth: dict[str, str]) -> DesiredState:
    resp = overlord.client.get(f"/api/v1/devices/{device_id}/desired-state", headers=auth)
    return DesiredState.model_validate(resp.json())


def _targeted(overlord: Overlord, fleet: dict[str, dict[str, str]]) -> list[str]:
    return [
        d
        for d, auth in fleet.items()
        if (s := _desired(overlord, d, auth)).os is not None and str(s.os.version) == "1.1.0"
    ]


def _commit(overlord: Overlord, device_id: str, auth: dict[str, str], seq: int = 1) -> None:
    overlord.client.post(
        f"/api/v1/devices/{device_id}/events",
        json=events((seq, EventKind.UPDATE_COMMITTED, "1.1.0", None)),
        headers=auth,
    )
    overlord.client.post(
        f"/api/v1/devices/{device_id}/heartbeat",
        json=heartbeat("1.1.0", state=UpdateState.COMMITTED),
        headers=auth,
    )


def _create(overlord: Overlord, *, expect: int = 201, **extra: object) -> dict:
    body = {
        "name": "r1",
        "kind": "os",
        "version": "1.1.0",
        "stages": [50, 100],
        "success_window_s": 60,
    } | extra
    resp = overlord.client.post("/api/v1/rollouts", json=body, headers=overlord.as_admin())
    assert resp.status_code == expect, resp.text
    return resp.json()


def test_rollout_goes_canary_then_stages_then_completes(overlord: Overlord):
    fleet = _fleet(overlord, 6)
    rollout = _create(overlord)
    _tick(overlord)
    canary = _targeted(overlord, fleet)
    assert len(canary) == 1
    desired = _desired(overlord, canary[0], fleet[canary[0]])
    assert desired.os is not None and desired.os.manifest_target == "os/1.1.0/manifest.json"
    _commit(overlord, canary[0], fleet[canary[0]])
    _tick(overlord)
    assert len(_targeted(overlord, fleet)) == 1, "the success window holds the next stage back"
    _tick(overlord, later_s=61)
    assert len(_targeted(overlord, fleet)) == 3
    for device_id in _targeted(overlord, fleet):
        _commit(overlord, device_id, fleet[device_id])
    _tick(overlord)
    _tick(overlord, later_s=61)
    assert len(_targeted(overlord, fleet)) == 6
    for device_id in _targeted(overlord, fleet):
        _commit(overlord, device_id, fleet[device_id])
    _tick(overlord)
    _tick(overlord, later_s=61)
    final = overlord.client.get(
        f"/api/v1/rollouts/{rollout['id']}", headers=overlord.as_admin()
    ).json()
    assert final["state"] == "completed"
    assert final["devices"]["succeeded"] == 6


def test_failures_past_the_threshold_halt_the_rollout_with_reasons(overlord: Overlord):
    fleet = _fleet(overlord, 4)
    rollout = _create(overlord, canary_devices=2)
    _tick(overlord)
    canaries = _targeted(overlord, fleet)
    assert len(canaries) == 2
    bad = canaries[0]
    overlord.client.post(
        f"/api/v1/devices/{bad}/events",
        json=events(
            (1, EventKind.ROLLBACK, "1.1.0", "trial boot: health check docker.service failed")
        ),
        headers=fleet[bad],
    )
    _tick(overlord)
    halted = overlord.client.get(
        f"/api/v1/rollouts/{rollout['id']}", headers=overlord.as_admin()
    ).json()
    assert halted["state"] == "halted"
    assert "docker.service failed" in halted["halt_reason"]
    assert "1 of 2 devices failed" in halted["halt_reason"]
    # The canary that had not started is withdrawn, the failed one no longer pointed at 1.1.0.
    assert _targeted(overlord, fleet) == []
    alerts = overlord.client.get("/api/v1/alerts?open=true", headers=overlord.as_admin()).json()
    assert any(a["kind"] == "rollout-halted" for a in alerts)
    resumed = overlord.client.post(
        f"/api/v1/rollouts/{rollout['id']}/resume", headers=overlord.as_admin()
    )
    assert resumed.json()["state"] == "running"


def test_devices_silent_past_the_stage_timeout_halt_the_rollout(overlord: Overlord):
    fleet = _fleet(overlord, 4)
    rollout = _create(overlord, canary_devices=2, stage_timeout_s=600)
    _tick(overlord)
    canaries = _targeted(overlord, fleet)
    _commit(overlord, canaries[0], fleet[canaries[0]])
    _tick(overlord, later_s=599)
    base = f"/api/v1/rollouts/{rollout['id']}"
    assert overlord.client.get(base, headers=overlord.as_admin()).json()["state"] == "running"
    _tick(overlord, later_s=601)  # the other canary never reported: it counts as failed
    halted = overlord.client.get(base, headers=overlord.as_admin()).json()
    assert halted["state"] == "halted"
    assert halted["devices"]["timed_out"] == 1
    assert "1 of 2 devices failed" in halted["halt_reason"]
    assert "did not report success within 10 min 0 s of admission" in halted["halt_reason"]
    # Like a failed device, the silent one is no longer pointed at the release.
    assert _targeted(overlord, fleet) == [canaries[0]]


def test_a_timeout_below_the_threshold_lets_the_stage_settle_and_a_late_success_counts(
    overlord: Overlord,
):
    fleet = _fleet(overlord, 4)
    rollout = _create(
        overlord, canary_devices=2, stage_timeout_s=600, failure_threshold=0.5, success_window_s=0
    )
    _tick(overlord)
    early, late = _targeted(overlord, fleet)
    _commit(overlord, early, fleet[early])
    _tick(overlord, later_s=601)  # 1 of 2 timed out: not above 50%, and the stage settles
    base = f"/api/v1/rollouts/{rollout['id']}"
    moved_on = overlord.client.get(base, headers=overlord.as_admin()).json()
    assert moved_on["state"] == "running" and moved_on["stage_label"] == "50%"
    _commit(overlord, late, fleet[late])
    rows = overlord.client.get(f"{base}/devices", headers=overlord.as_admin()).json()
    late_row = next(r for r in rows if r["device_id"] == late)
    assert late_row["outcome"] == "succeeded" and late_row["reason"] is None


def test_pause_resume_abort(overlord: Overlord):
    fleet = _fleet(overlord, 3)
    rollout = _create(overlord, start=False)
    assert rollout["state"] == "pending"
    _tick(overlord)
    assert _targeted(overlord, fleet) == []
    base = f"/api/v1/rollouts/{rollout['id']}"
    assert overlord.client.post(f"{base}/pause", headers=overlord.as_admin()).status_code == 409
    assert (
        overlord.client.post(f"{base}/resume", headers=overlord.as_admin()).json()["state"]
        == "running"
    )
    assert (
        overlord.client.post(f"{base}/pause", headers=overlord.as_admin()).json()["state"]
        == "paused"
    )
    _tick(overlord)
    assert _targeted(overlord, fleet) == []
    overlord.client.post(f"{base}/resume", headers=overlord.as_admin())
    _tick(overlord)
    assert len(_targeted(overlord, fleet)) == 1
    aborted = overlord.client.post(f"{base}/abort", headers=overlord.as_admin()).json()
    assert aborted["state"] == "aborted"
    assert _targeted(overlord, fleet) == []
    assert overlord.client.post(f"{base}/abort", headers=overlord.as_admin()).status_code == 409


def _night_group(overlord: Overlord, fleet: dict[str, dict[str, str]]) -> None:
    """Put ``fleet`` in group "night", whose maintenance window opens in two hours."""
    now = utcnow()
    closed = {
        "window_start": (now + timedelta(hours=2)).strftime("%H:%M:%S"),
        "window_end": (now + timedelta(hours=3)).strftime("%H:%M:%S"),
    }
    admin = overlord.as_admin()
    assert (
        overlord.client.put("/api/v1/groups/night", json=closed, headers=admin).status_code == 200
    )
    for device_id in fleet:
        overlord.client.patch(
            f"/api/v1/devices/{device_id}", json={"group": "night"}, headers=admin
        )


def test_maintenance_window_holds_devices_back(overlord: Overlord):
    fleet = _fleet(overlord, 2)
    _night_group(overlord, fleet)
    _create(overlord, selector={"groups": ["night"]})
    _tick(overlord)
    assert _targeted(overlord, fleet) == []
    _tick(overlord, later_s=2 * 3600 + 60)
    assert len(_targeted(overlord, fleet)) == 1


def test_rollouts_need_a_signed_release_and_an_operator(overlord: Overlord):
    _fleet(overlord, 1)
    resp = overlord.client.post(
        "/api/v1/rollouts",
        json={"name": "x", "kind": "os", "version": "9.9.9"},
        headers=overlord.as_admin(),
    )
    assert resp.status_code == 404
    from overlord.auth.models import KeyRole

    viewer = {"Authorization": f"Bearer {overlord.token(KeyRole.VIEWER)}"}
    resp = overlord.client.post(
        "/api/v1/rollouts", json={"name": "x", "kind": "os", "version": "1.1.0"}, headers=viewer
    )
    assert resp.status_code == 403
    _create(overlord)
    clash = overlord.client.post(
        "/api/v1/rollouts",
        json={"name": "r2", "kind": "os", "version": "1.1.0"},
        headers=overlord.as_admin(),
    )
    assert clash.status_code == 409


def test_role_rollout_sets_desired_roles(overlord: Overlord):
    fleet = _fleet(overlord, 1)
    _create(overlord, name="cam", kind="role", role="camera", version="2.0.0")
    _tick(overlord)
    device_id, auth = next(iter(fleet.items()))
    state = _desired(overlord, device_id, auth)
    assert [(r.name, str(r.version), r.target) for r in state.roles] == [
        ("camera", "2.0.0", "roles/camera/2.0.0.tar.zst")
    ]


def test_listing_rollouts_costs_the_same_queries_for_any_number(overlord: Overlord):
    """Counts and the stage's failure ratio come from grouped queries, not one per rollout."""
    fleet = _fleet(overlord, 4)
    ctx = overlord.ctx

    def listing_queries() -> tuple[int, list[dict]]:
        statements: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:
            statements.append(statement)

        engine = ctx.sessions.kw["bind"]
        event.listen(engine, "before_cursor_execute", count)
        try:
            answer = overlord.client.get("/api/v1/rollouts", headers=overlord.as_admin())
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert answer.status_code == 200
        return len(statements), answer.json()

    def abort(rollout: dict) -> None:
        url = f"/api/v1/rollouts/{rollout['id']}/abort"
        assert overlord.client.post(url, headers=overlord.as_admin()).status_code == 200

    first = _create(overlord, name="first")
    _tick(overlord)
    admitted = len(_targeted(overlord, fleet))
    one, listed = listing_queries()
    assert sum(listed[0]["devices"].values()) == admitted > 0
    abort(first)
    for number in range(2, 12):
        abort(_create(overlord, name=f"r{number}"))
    many, listed = listing_queries()
    assert len(listed) == 11 and many == one
