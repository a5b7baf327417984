"""Pre-staged installs (ADR 0082): a running OS rollout, or a scheduled one before its start,
tells every targeted device it has not admitted yet to stage the release, and withdraws the hint
when it stops."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from fleetcore.wire import DesiredState
from overlord.auth.models import KeyRole
from overlord.db import utcnow
from overlord.rollouts.plan import admission_order
from tests.overlord.conftest import Overlord, heartbeat
from tests.overlord.test_rollouts import (
    _commit,
    _create,
    _desired,
    _fleet,
    _night_group,
    _targeted,
    _tick,
)


def _staging(overlord: Overlord, fleet: dict[str, dict[str, str]]) -> list[str]:
    return [
        d
        for d, auth in fleet.items()
        if (s := _desired(overlord, d, auth)).prestage is not None
        and str(s.prestage.version) == "1.1.0"
    ]


def test_devices_not_yet_admitted_are_told_to_stage_and_admitted_ones_are_not(overlord: Overlord):
    fleet = _fleet(overlord, 4)
    _create(overlord)
    _tick(overlord)
    canary = _targeted(overlord, fleet)
    assert len(canary) == 1
    assert sorted(_staging(overlord, fleet)) == sorted(set(fleet) - set(canary))
    device_id = next(d for d in fleet if d not in canary)
    prestage = _desired(overlord, device_id, fleet[device_id]).prestage
    assert prestage is not None and prestage.manifest_target == "os/1.1.0/manifest.json"
    assert prestage.poll_s == 10  # once staged, the device polls every 10 s
    _commit(overlord, canary[0], fleet[canary[0]])
    _tick(overlord)
    _tick(overlord, later_s=61)  # the canary's success window: half the fleet is admitted
    admitted = _targeted(overlord, fleet)
    assert len(admitted) == 2
    assert sorted(_staging(overlord, fleet)) == sorted(set(fleet) - set(admitted))


def test_the_hint_changes_the_etag_so_a_polling_device_sees_it(overlord: Overlord):
    fleet = _fleet(overlord, 2)
    url = "/api/v1/devices/{}/desired-state"
    before = {d: overlord.client.get(url.format(d), headers=auth) for d, auth in fleet.items()}
    assert all("prestage" not in r.json() for r in before.values())
    _create(overlord)
    _tick(overlord)
    (staging,) = _staging(overlord, fleet)
    auth = fleet[staging]
    tag = before[staging].headers["ETag"]
    after = overlord.client.get(url.format(staging), headers=auth | {"If-None-Match": tag})
    assert after.status_code == 200 and after.json()["os"] is None
    tag = after.headers["ETag"]
    again = overlord.client.get(url.format(staging), headers=auth | {"If-None-Match": tag})
    assert again.status_code == 304


def test_aborting_withdraws_the_hint(overlord: Overlord):
    fleet = _fleet(overlord, 3)
    rollout = _create(overlord)
    _tick(overlord)
    assert len(_staging(overlord, fleet)) == 2
    base = f"/api/v1/rollouts/{rollout['id']}"
    assert overlord.client.post(f"{base}/abort", headers=overlord.as_admin()).status_code == 200
    assert _staging(overlord, fleet) == []
    assert _targeted(overlord, fleet) == []


def test_staging_ignores_maintenance_windows_but_admission_waits_for_them(overlord: Overlord):
    fleet = _fleet(overlord, 2)
    _night_group(overlord, fleet)
    _create(overlord, selector={"groups": ["night"]})
    _tick(overlord)
    assert _targeted(overlord, fleet) == []
    assert sorted(_staging(overlord, fleet)) == sorted(fleet)


def test_a_pending_rollout_and_a_completed_one_hint_nothing(overlord: Overlord):
    fleet = _fleet(overlord, 1)
    rollout = _create(overlord, start=False, stages=[100], success_window_s=0)
    _tick(overlord)
    assert _staging(overlord, fleet) == []
    admin = overlord.as_admin()
    overlord.client.post(f"/api/v1/rollouts/{rollout['id']}/resume", headers=admin)
    _tick(overlord)
    (device_id,) = _targeted(overlord, fleet)
    _commit(overlord, device_id, fleet[device_id])
    _tick(overlord)
    _tick(overlord)
    state = overlord.client.get(f"/api/v1/rollouts/{rollout['id']}", headers=admin).json()
    assert state["state"] == "completed"
    assert (
        DesiredState.model_validate(
            overlord.client.get(
                f"/api/v1/devices/{device_id}/desired-state", headers=fleet[device_id]
            ).json()
        ).prestage
        is None
    )


def _beat_staged(
    overlord: Overlord, device_id: str, auth: dict[str, str], staged: str | None
) -> None:
    body = heartbeat() | {"staged_version": staged}
    resp = overlord.client.post(f"/api/v1/devices/{device_id}/heartbeat", json=body, headers=auth)
    assert resp.status_code == 204, resp.text


def test_staged_devices_are_shown_per_device_and_counted_on_the_rollout_page(
    overlord: Overlord,
):
    fleet = _fleet(overlord, 3)
    rollout = _create(overlord)
    _tick(overlord)
    hinted = sorted(_staging(overlord, fleet))
    assert len(hinted) == 2
    first, second = hinted
    _beat_staged(overlord, first, fleet[first], "1.1.0")
    url = "/api/v1/devices/{}"
    admin = overlord.as_admin()
    assert overlord.client.get(url.format(first), headers=admin).json()["staged_version"] == (
        "1.1.0"
    )
    assert overlord.client.get(url.format(second), headers=admin).json()["staged_version"] is None
    browser = TestClient(overlord.client.app, base_url="http://overlord.test")
    browser.post("/dashboard/login", data={"token": overlord.token(KeyRole.VIEWER)})
    page = browser.get(f"/dashboard/devices/{first}").text
    assert '<dd id="staged-version">1.1.0 ' in page
    assert 'id="staged-version"' not in browser.get(f"/dashboard/devices/{second}").text
    rollout_page = f"/dashboard/rollouts/{rollout['id']}"
    assert '<dd id="rollout-staged">1 ' in browser.get(rollout_page).text
    _beat_staged(overlord, second, fleet[second], "1.1.0")
    assert '<dd id="rollout-staged">2 ' in browser.get(rollout_page).text
    _beat_staged(overlord, first, fleet[first], None)  # staged slot overwritten, or an old agent
    assert overlord.client.get(url.format(first), headers=admin).json()["staged_version"] is None
    assert '<dd id="rollout-staged">1 ' in browser.get(rollout_page).text
    overlord.client.post(f"/api/v1/rollouts/{rollout['id']}/abort", headers=admin)
    assert 'id="rollout-staged"' not in browser.get(rollout_page).text  # no hints any more


def test_a_stage_admits_devices_that_staged_the_release_first(overlord: Overlord):
    fleet = _fleet(overlord, 4)
    rollout = _create(overlord)
    _tick(overlord)
    (canary,) = _targeted(overlord, fleet)
    # of the three waiting, only the one plain admission order would pick last has staged
    waiting = sorted(_staging(overlord, fleet), key=lambda d: admission_order(rollout["name"], d))
    _beat_staged(overlord, waiting[-1], fleet[waiting[-1]], "1.1.0")
    _commit(overlord, canary, fleet[canary])
    _tick(overlord)
    _tick(overlord, later_s=61)
    assert sorted(_targeted(overlord, fleet)) == sorted([canary, waiting[-1]])


def test_a_scheduled_rollout_hints_before_its_start_and_its_canary_is_a_staged_device(
    overlord: Overlord,
):
    """Before its start a scheduled rollout admits nobody but tells every target to stage, so
    the canary that starts it is one whose release is already written."""
    fleet = _fleet(overlord, 4)
    start_at = (utcnow() + timedelta(hours=1)).isoformat()
    rollout = _create(overlord, start_at=start_at)
    _tick(overlord)
    assert _targeted(overlord, fleet) == []
    assert sorted(_staging(overlord, fleet)) == sorted(fleet)
    # the device plain admission order would pick last is the one that staged
    last = sorted(fleet, key=lambda d: admission_order(rollout["name"], d))[-1]
    _beat_staged(overlord, last, fleet[last], "1.1.0")
    browser = TestClient(overlord.client.app, base_url="http://overlord.test")
    browser.post("/dashboard/login", data={"token": overlord.token(KeyRole.VIEWER)})
    assert '<dd id="rollout-staged">1 ' in browser.get(f"/dashboard/rollouts/{rollout['id']}").text
    _tick(overlord, later_s=3590)
    assert _targeted(overlord, fleet) == []
    _tick(overlord, later_s=3601)
    assert _targeted(overlord, fleet) == [last]
    assert sorted(_staging(overlord, fleet)) == sorted(set(fleet) - {last})


def test_a_scheduled_rollout_stopped_before_its_start_withdraws_its_hint(overlord: Overlord):
    fleet = _fleet(overlord, 2)
    admin = overlord.as_admin()
    soon = utcnow() + timedelta(hours=1)
    aborted = _create(overlord, start_at=soon.isoformat())
    _tick(overlord)
    assert len(_staging(overlord, fleet)) == 2
    overlord.client.post(f"/api/v1/rollouts/{aborted['id']}/abort", headers=admin)
    assert _staging(overlord, fleet) == []
    # a deadline that passes before the start halts the rollout: its hint goes with it
    _create(
        overlord,
        name="r2",
        start_at=soon.isoformat(),
        deadline=(soon + timedelta(minutes=1)).isoformat(),
    )
    _tick(overlord)
    assert len(_staging(overlord, fleet)) == 2
    _tick(overlord, later_s=3600 + 61)
    assert _staging(overlord, fleet) == []
    assert _targeted(overlord, fleet) == []
