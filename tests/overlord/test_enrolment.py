"""Enrolment and re-enrolment: admin decisions survive, one live credential per device."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from fleetcore.wire import RegisterRequest
from overlord.auth.models import ApiKey, KeyRole
from overlord.db import make_engine, make_sessionmaker, unit_of_work
from overlord.devices import service as devices_service
from overlord.devices.models import Device
from overlord.errors import OverlordError
from tests.overlord.conftest import Overlord, create_token, heartbeat


def _set_status(overlord: Overlord, device_id: str, status: str) -> None:
    resp = overlord.client.patch(
        f"/api/v1/devices/{device_id}/status", json={"status": status}, headers=overlord.as_admin()
    )
    assert resp.status_code == 200, resp.text


def _admin_status(overlord: Overlord, device_id: str) -> str:
    resp = overlord.client.get(f"/api/v1/devices/{device_id}", headers=overlord.as_admin())
    return str(resp.json()["admin_status"])


def test_reenrolment_keeps_a_quarantine(overlord: Overlord):
    device_id, _auth = overlord.enroll("Q1")
    _set_status(overlord, device_id, "quarantined")
    again_id, again_auth = overlord.enroll("Q1")
    assert again_id == device_id
    assert _admin_status(overlord, device_id) == "quarantined"
    state = overlord.client.get(f"/api/v1/devices/{device_id}/desired-state", headers=again_auth)
    assert state.status_code == 200 and state.json()["os"] is None


def test_a_decommissioned_device_cannot_reenrol(overlord: Overlord):
    device_id, _auth = overlord.enroll("D1")
    _set_status(overlord, device_id, "decommissioned")
    body = {
        "enrollment_token": overlord.enrollment,
        "hostname": "pi",
        "hardware": "pi4",
        "serial": "D1",
        "image_version": "1.0.0",
        "booted_slot": "a",
    }
    refused = overlord.client.post("/api/v1/devices/register", json=body)
    assert refused.status_code == 403 and "decommissioned" in refused.json()["detail"]
    assert "token" not in refused.text.lower().replace("enrollment token", "")
    assert _admin_status(overlord, device_id) == "decommissioned"
    # An admin brings it back: then it may enrol again, as the same device.
    _set_status(overlord, device_id, "active")
    again_id, auth = overlord.enroll("D1")
    assert again_id == device_id
    hb = overlord.client.post(
        f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(), headers=auth
    )
    assert hb.status_code == 204


def _register_concurrently(url: str, serial: str, count: int) -> list[str]:
    """``count`` threads enrol ``serial`` at once, each in its own transaction."""
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    start = threading.Barrier(count)
    device_ids: list[str] = []
    errors: list[Exception] = []
    request = RegisterRequest.model_validate(
        {
            "enrollment_token": enrollment,
            "hostname": "pi",
            "hardware": "pi4",
            "serial": serial,
            "image_version": "1.0.0",
            "booted_slot": "a",
        }
    )

    def enrol() -> None:
        start.wait()
        try:
            with unit_of_work(sessions) as session:
                device_ids.append(devices_service.register(session, request=request).device_id)
        except (OverlordError, OSError) as err:
            errors.append(err)

    threads = [threading.Thread(target=enrol) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert errors == []
    return device_ids


def _live_device_keys(url: str, serial: str) -> tuple[int, int]:
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            devices = session.scalar(
                select(func.count()).select_from(Device).where(Device.serial == serial)
            )
            live = session.scalar(
                select(func.count())
                .select_from(ApiKey)
                .join(Device, Device.id == ApiKey.device_id)
                .where(Device.serial == serial, ApiKey.revoked_at.is_(None))
            )
        return int(devices or 0), int(live or 0)
    finally:
        engine.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("first", [True, False], ids=["first-enrolment", "re-enrolment"])
def test_concurrent_enrolments_leave_one_live_credential(pg_database: str, first: bool):
    url = pg_database
    serial = f"RACE-{first}"
    if not first:
        _register_concurrently(url, serial, 1)
    ids = _register_concurrently(url, serial, 10)
    assert len(ids) == 10 and len(set(ids)) == 1
    assert _live_device_keys(url, serial) == (1, 1)
