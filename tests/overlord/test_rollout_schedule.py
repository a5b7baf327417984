"""Scheduled rollouts: pending until start_at, halted at the deadline; bad schedules are 422s
that name the field and store nothing. On SQLite and PostgreSQL, the engine ticked by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fleetcore.wire import EventKind
from overlord.db import unit_of_work, utcnow
from overlord.rollouts import schedule
from overlord.rollouts.models import DeploymentRollout
from tests.overlord.conftest import Overlord, events
from tests.overlord.test_rollouts import _commit, _create, _fleet, _targeted, _tick


def _at(offset_s: float) -> str:
    return (utcnow() + timedelta(seconds=offset_s)).isoformat()


def _get(overlord: Overlord, rollout_id: int) -> dict:
    answer = overlord.client.get(f"/api/v1/rollouts/{rollout_id}", headers=overlord.as_admin())
    assert answer.status_code == 200, answer.text
    return answer.json()


def _audit(overlord: Overlord, action: str) -> list[dict]:
    answer = overlord.client.get(f"/api/v1/audit?action={action}", headers=overlord.as_admin())
    return list(answer.json()["items"])


def test_a_scheduled_rollout_waits_for_its_start_then_runs(overlord: Overlord):
    fleet = _fleet(overlord, 2)
    rollout = _create(overlord, start_at=_at(3600), stages=[100], success_window_s=0)
    assert rollout["state"] == "pending"
    assert datetime.fromisoformat(rollout["start_at"]) > utcnow()
    _tick(overlord, later_s=3590)
    assert _get(overlord, rollout["id"])["state"] == "pending"
    assert _targeted(overlord, fleet) == []
    _tick(overlord, later_s=3601)
    assert _get(overlord, rollout["id"])["state"] == "running"
    (started,) = _audit(overlord, "rollout.start")
    assert (started["actor_name"], started["via"]) == ("scheduler", "scheduler")
    assert (started["before"]["state"], started["after"]["state"]) == ("pending", "running")
    (canary,) = _targeted(overlord, fleet)
    _commit(overlord, canary, fleet[canary])
    for _ in range(3):
        _tick(overlord, later_s=3602)
        for device_id in _targeted(overlord, fleet):
            _commit(overlord, device_id, fleet[device_id])
    assert _get(overlord, rollout["id"])["state"] == "completed"


def test_the_deadline_stops_admission_and_devices_already_updating_finish(overlord: Overlord):
    fleet = _fleet(overlord, 4)
    rollout = _create(overlord, canary_devices=2, deadline=_at(600))
    _tick(overlord)
    canaries = _targeted(overlord, fleet)
    updating, waiting = canaries
    overlord.client.post(
        f"/api/v1/devices/{updating}/events",
        json=events((1, EventKind.INSTALL_STARTED, "1.1.0", None)),
        headers=fleet[updating],
    )
    _tick(overlord, later_s=601)
    halted = _get(overlord, rollout["id"])
    assert halted["state"] == "halted"
    assert halted["halt_reason"].startswith(schedule.DEADLINE_PREFIX)
    assert "0 of 2 admitted devices succeeded" in halted["halt_reason"]
    (expired,) = _audit(overlord, "rollout.deadline")
    assert expired["after"]["halt_reason"] == halted["halt_reason"]
    # The admitted device that had not started is withdrawn; the one updating goes on.
    assert _targeted(overlord, fleet) == [updating] and waiting not in _targeted(overlord, fleet)
    _commit(overlord, updating, fleet[updating], seq=2)
    assert _get(overlord, rollout["id"])["devices"]["succeeded"] == 1
    with unit_of_work(overlord.ctx.sessions) as session:  # the engine ran 601 s ahead
        session.get_one(DeploymentRollout, rollout["id"]).deadline = utcnow()
    refused = overlord.client.post(
        f"/api/v1/rollouts/{rollout['id']}/resume", headers=overlord.as_admin()
    )
    assert refused.status_code == 409
    assert "deadline passed" in refused.json()["detail"]
    aborted = overlord.client.post(
        f"/api/v1/rollouts/{rollout['id']}/abort", headers=overlord.as_admin()
    )
    assert aborted.json()["state"] == "aborted"


def test_a_scheduled_rollout_whose_deadline_passes_before_its_start_never_admits(
    overlord: Overlord,
):
    fleet = _fleet(overlord, 2)
    rollout = _create(overlord, start_at=_at(60), deadline=_at(120))
    _tick(overlord, later_s=121)
    halted = _get(overlord, rollout["id"])
    assert halted["state"] == "halted" and "0 of 0 admitted" in halted["halt_reason"]
    assert _targeted(overlord, fleet) == []


def test_resume_starts_a_scheduled_rollout_early(overlord: Overlord):
    _fleet(overlord, 1)
    rollout = _create(overlord, start_at=_at(3600))
    started = overlord.client.post(
        f"/api/v1/rollouts/{rollout['id']}/resume", headers=overlord.as_admin()
    )
    assert started.json()["state"] == "running"


def test_a_zone_offset_is_kept_as_the_same_instant(overlord: Overlord):
    _fleet(overlord, 1)
    start = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    in_india = start.astimezone(timezone(timedelta(hours=5, minutes=30)))
    rollout = _create(overlord, start_at=in_india.isoformat())
    assert datetime.fromisoformat(rollout["start_at"]) == start


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"start_at": "2030-01-01T06:00:00"}, "start_at", "timezone"),
        ({"start_at": "2020-01-01T06:00:00Z"}, "start_at", "in the past"),
        ({"start_at": "2999-01-01T06:00:00Z"}, "start_at", "days ahead"),
        ({"deadline": "2030-01-01T06:00:00"}, "deadline", "timezone"),
        ({"deadline": "2020-01-01T06:00:00Z"}, "deadline", "not after now"),
        (
            {"start_at": "+3600", "deadline": "+1800"},
            "deadline",
            "not after start_at",
        ),
        ({"start_at": "+3600", "start": False}, "body", "leave start true"),
        ({"start_at": "tomorrow"}, "start_at", "datetime"),
        ({"start_at": "2030-01-01T06:00:00Z" + "0" * 5000}, "start_at", "datetime"),
        ({"schedule": {"at": "+60"}}, "schedule", "Extra inputs"),
    ],
)
def test_an_invalid_schedule_is_a_422_naming_the_field_and_stores_nothing(
    overlord: Overlord, extra: dict, field: str, words: str
):
    _fleet(overlord, 1)
    relative = {
        k: _at(int(v)) if isinstance(v, str) and v[0] == "+" else v for k, v in extra.items()
    }
    body = {"name": "bad", "kind": "os", "version": "1.1.0"} | relative
    answer = overlord.client.post("/api/v1/rollouts", json=body, headers=overlord.as_admin())
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["loc"][-1] == field, problem
    assert words in problem["msg"], problem
    assert overlord.client.get("/api/v1/rollouts", headers=overlord.as_admin()).json() == []
    audit = overlord.client.get("/api/v1/audit", headers=overlord.as_admin()).json()
    assert not [e for e in audit["items"] if e["action"] == "rollout.create"]
