"""A rollout may require a minimum EEPROM bootloader before it offers an OS release: devices
below it (or that never reported one) are held back, the device's API and page say why, and a
device is offered the release once a heartbeat reports a bootloader at the minimum. The
bootloader version is a column (migration 0013), so the device list filters on it."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi.testclient import TestClient

from fleetcore.bootloader import TrybootSupport
from fleetcore.wire import BootloaderReport, DesiredState
from overlord.auth.models import KeyRole
from overlord.db import unit_of_work, utcnow
from overlord.rollouts import service as rollouts_service
from tests.overlord.conftest import Overlord, heartbeat

PI4_2023_05_11 = 1683786363  # 2023.5.11.23163
PI4_2024_04_15 = 1713186734  # 2024.4.15.47534
MINIMUM = "2024.4.15.47534"


def _beat(overlord: Overlord, device_id: str, auth: dict[str, str], eeprom: int | None) -> None:
    body = heartbeat("1.0.0")
    if eeprom is not None:
        body["bootloader"] = BootloaderReport(
            version=eeprom, tryboot_ab=TrybootSupport.SUPPORTED
        ).model_dump(mode="json")
    resp = overlord.client.post(f"/api/v1/devices/{device_id}/heartbeat", json=body, headers=auth)
    assert resp.status_code == 204, resp.text


def _tick(overlord: Overlord, *, later_s: float = 0) -> None:
    with unit_of_work(overlord.ctx.sessions) as session:
        rollouts_service.tick(session, now=utcnow() + timedelta(seconds=later_s))


def _offered(overlord: Overlord, device_id: str, auth: dict[str, str]) -> str | None:
    resp = overlord.client.get(f"/api/v1/devices/{device_id}/desired-state", headers=auth)
    state = DesiredState.model_validate(resp.json())
    return str(state.os.version) if state.os else None


def _create(overlord: Overlord, **body: object) -> httpx.Response:
    spec = {"name": "os-1.1", "kind": "os", "version": "1.1.0", "stages": [100]} | body
    return overlord.client.post("/api/v1/rollouts", json=spec, headers=overlord.as_admin())


def test_devices_below_the_minimum_are_held_back_and_told_why(overlord: Overlord) -> None:
    new, new_auth = overlord.enroll("MB1", hostname="a-new")
    old, old_auth = overlord.enroll("MB2", hostname="b-old")
    silent, silent_auth = overlord.enroll("MB3", hostname="c-silent")
    _beat(overlord, new, new_auth, PI4_2024_04_15)
    _beat(overlord, old, old_auth, PI4_2023_05_11)
    _beat(overlord, silent, silent_auth, None)  # an agent that reports no bootloader
    resp = _create(overlord, min_bootloader=MINIMUM, canary_devices=3)
    assert resp.status_code == 201, resp.text
    assert resp.json()["min_bootloader"] == MINIMUM
    _tick(overlord)
    assert _offered(overlord, new, new_auth) == "1.1.0"
    assert _offered(overlord, old, old_auth) is None
    assert _offered(overlord, silent, silent_auth) is None

    admin = overlord.as_admin()
    held = overlord.client.get(f"/api/v1/devices/{old}", headers=admin).json()["held_back"]
    assert held == [
        {
            "rollout": "os-1.1",
            "version": "1.1.0",
            "min_bootloader": MINIMUM,
            "reason": "needs bootloader 2024-04-15 13:12:14 or later; "
            "the device runs 2023-05-11 06:26:03",
        }
    ]
    held = overlord.client.get(f"/api/v1/devices/{silent}", headers=admin).json()["held_back"]
    assert [h["reason"] for h in held] == [
        "needs bootloader 2024-04-15 13:12:14 or later; "
        "the device has not reported its bootloader version"
    ]
    assert overlord.client.get(f"/api/v1/devices/{new}", headers=admin).json()["held_back"] == []

    browser = TestClient(overlord.client.app, base_url="http://overlord.test")
    browser.post("/dashboard/login", data={"token": overlord.token(KeyRole.VIEWER)})
    page = browser.get(f"/dashboard/devices/{old}").text
    assert (
        "1.1.0 (rollout os-1.1): needs bootloader 2024-04-15 13:12:14 or later; "
        "the device runs 2023-05-11 06:26:03"
    ) in page

    # A bootloader update reaches the old device: it is offered the release at the next pass.
    _beat(overlord, old, old_auth, PI4_2024_04_15)
    _tick(overlord, later_s=3600)
    assert _offered(overlord, old, old_auth) == "1.1.0"
    assert overlord.client.get(f"/api/v1/devices/{old}", headers=admin).json()["held_back"] == []
    assert _offered(overlord, silent, silent_auth) is None


def test_without_a_minimum_every_device_is_offered_the_release(overlord: Overlord) -> None:
    device, auth = overlord.enroll("MB4")
    _beat(overlord, device, auth, PI4_2023_05_11)
    assert _create(overlord).status_code == 201
    _tick(overlord)
    assert _offered(overlord, device, auth) == "1.1.0"


def test_a_bad_minimum_is_refused_naming_the_field(overlord: Overlord) -> None:
    overlord.enroll("MB5")
    for body, words in (
        ({"min_bootloader": "2024.13.1.0"}, "min_bootloader"),
        ({"min_bootloader": "2024.4.15"}, "not a bootloader version"),
        ({"min_bootloader": "2024.4.15.86400"}, "not a bootloader version"),
        (
            {"kind": "role", "role": "camera", "version": "2.0.0", "min_bootloader": MINIMUM},
            "only an os rollout takes it",
        ),
    ):
        resp = _create(overlord, **body)
        assert resp.status_code == 422, body
        assert words in resp.text, resp.text
    listed = overlord.client.get("/api/v1/rollouts", headers=overlord.as_admin()).json()
    assert listed == []


def test_the_device_list_filters_by_bootloader(overlord: Overlord) -> None:
    new, new_auth = overlord.enroll("MB6", hostname="a-new")
    old, old_auth = overlord.enroll("MB7", hostname="b-old")
    silent, _ = overlord.enroll("MB8", hostname="c-silent")
    _beat(overlord, new, new_auth, PI4_2024_04_15)
    _beat(overlord, old, old_auth, PI4_2023_05_11)
    admin = overlord.as_admin()
    below = overlord.client.get(
        "/api/v1/devices", params={"bootloader_below": MINIMUM}, headers=admin
    ).json()
    assert [d["id"] for d in below["items"]] == [old, silent]
    resp = overlord.client.get(
        "/api/v1/devices", params={"bootloader_below": "2024.2.30.0"}, headers=admin
    )
    assert resp.status_code == 422
    assert "bootloader_below" in resp.text
