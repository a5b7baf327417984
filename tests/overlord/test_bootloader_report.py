"""The EEPROM bootloader a device reports in its heartbeat is kept in the stored heartbeat's
JSON and shown by GET /devices/{id} and the dashboard's device page; an older agent's
heartbeat (without it) is still accepted."""

from __future__ import annotations

from fastapi.testclient import TestClient

from fleetcore.bootloader import TrybootSupport
from fleetcore.wire import BootloaderReport
from overlord.auth.models import KeyRole
from tests.overlord.conftest import Overlord, heartbeat

OLD_PI4 = BootloaderReport(
    version=1669373653,
    boot_order="0xf41",
    secure_boot=False,
    tryboot_ab=TrybootSupport.BELOW_MINIMUM,
    minimum=1683786363,
    pending=1713186734,
)


def _beat(overlord: Overlord, device_id: str, auth: dict[str, str], report: dict | None) -> int:
    body = heartbeat("1.0.0")
    if report is not None:
        body["bootloader"] = report
    url = f"/api/v1/devices/{device_id}/heartbeat"
    return overlord.client.post(url, json=body, headers=auth).status_code


def test_the_api_shows_the_last_reported_bootloader(overlord: Overlord) -> None:
    device_id, auth = overlord.enroll("BL1")
    url = f"/api/v1/devices/{device_id}"
    assert _beat(overlord, device_id, auth, OLD_PI4.model_dump(mode="json")) == 204
    device = overlord.client.get(url, headers=overlord.as_admin()).json()
    assert device["bootloader"] == OLD_PI4.model_dump(mode="json")
    assert _beat(overlord, device_id, auth, None) == 204  # an older agent
    assert overlord.client.get(url, headers=overlord.as_admin()).json()["bootloader"] is None


def test_the_device_page_shows_the_bootloader(overlord: Overlord) -> None:
    device_id, auth = overlord.enroll("BL2")
    _beat(overlord, device_id, auth, OLD_PI4.model_dump(mode="json"))
    browser = TestClient(overlord.client.app, base_url="http://overlord.test")
    resp = browser.post("/dashboard/login", data={"token": overlord.token(KeyRole.VIEWER)})
    assert resp.status_code == 200, resp.text
    page = browser.get(f"/dashboard/devices/{device_id}").text
    assert "2022-11-25 10:54:13" in page
    assert "tryboot A/B below minimum</span> (needs 2023-05-11 06:26:03 or later)" in page
    assert "BOOT_ORDER 0xf41 · secure boot off · update to 2024-04-15 13:12:14 staged" in page


def test_an_unreadable_bootloader_is_shown_as_such(overlord: Overlord) -> None:
    device_id, auth = overlord.enroll("BL3")
    report = {"error": "cannot read the bootloader: vcgencmd not found on PATH"}
    _beat(overlord, device_id, auth, report)
    browser = TestClient(overlord.client.app, base_url="http://overlord.test")
    browser.post("/dashboard/login", data={"token": overlord.token(KeyRole.VIEWER)})
    page = browser.get(f"/dashboard/devices/{device_id}").text
    assert "unreadable: cannot read the bootloader: vcgencmd not found on PATH" in page


def test_a_bootloader_report_out_of_bounds_is_refused(overlord: Overlord) -> None:
    device_id, auth = overlord.enroll("BL4")
    for report in (
        {"version": -1},
        {"version": 1 << 32},
        {"version": "1683786363"},
        {"boot_order": "0xf41; reboot"},
        {"tryboot_ab": "maybe"},
        {"error": "x" * 301},
        {"surprise": 1},
    ):
        assert _beat(overlord, device_id, auth, report) == 422, report
