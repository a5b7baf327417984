"""The boot mode a device reports in its heartbeat (ADR 0071): stored on the device row,
shown by the API and the device page, counted by a metric; older agents' heartbeats without
it are still taken."""

from __future__ import annotations

from fastapi.testclient import TestClient

from overlord.auth.models import KeyRole
from tests.overlord.conftest import Overlord, heartbeat


def _beat(overlord: Overlord, device_id: str, auth: dict[str, str], mode: str | None) -> int:
    body = heartbeat("1.0.0")
    if mode is not None:
        body["boot_mode"] = mode
    url = f"/api/v1/devices/{device_id}/heartbeat"
    return overlord.client.post(url, json=body, headers=auth).status_code


def test_stored_shown_and_counted(overlord: Overlord):
    modes = {"BM1": "verity", "BM2": "secure-boot+verity", "BM3": "unsigned", "BM4": None}
    ids = {}
    for serial, mode in modes.items():
        device_id, auth = overlord.enroll(serial)
        ids[serial] = device_id
        assert _beat(overlord, device_id, auth, mode) == 204  # None: an older agent
    for serial, mode in modes.items():
        url = f"/api/v1/devices/{ids[serial]}"
        assert overlord.client.get(url, headers=overlord.as_admin()).json()["boot_mode"] == mode
    metrics = overlord.client.get("/metrics").text
    for mode in ("verity", "secure-boot+verity", "unsigned", "unknown"):
        assert f'fleet_devices_boot_mode{{boot_mode="{mode}"}} 1.0' in metrics


def test_an_unknown_mode_is_refused(overlord: Overlord):
    device_id, auth = overlord.enroll("BM5")
    assert _beat(overlord, device_id, auth, "trust-me") == 422


def test_the_device_page_says_what_the_mode_proves(overlord: Overlord):
    device_id, auth = overlord.enroll("BM6")
    browser = TestClient(overlord.client.app, base_url="http://overlord.test")
    resp = browser.post("/dashboard/login", data={"token": overlord.token(KeyRole.VIEWER)})
    assert resp.status_code == 200, resp.text
    page = browser.get(f"/dashboard/devices/{device_id}").text
    assert '<dd id="boot-mode">not reported (agent older than the boot mode)</dd>' in page
    assert _beat(overlord, device_id, auth, "verity") == 204
    page = browser.get(f"/dashboard/devices/{device_id}").text
    assert (
        '<dd id="boot-mode">verity · the root is verified; without secure boot, someone with '
        "the card can still replace the kernel or initramfs</dd>" in page
    )
