"""Release day on the dashboard in headless Chromium: the release list, a rollout created
from it with groups, an exclusion and a scheduled start, and the rollout's own page; a
viewer sees no form."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from overlord.auth.models import KeyRole
from overlord.db import utcnow
from tests.overlord.conftest import create_token, heartbeat
from tests.overlord.servers import overlord_process
from tests.overlord.test_dashboard_browser import _log_in, _log_out, _site, browser  # noqa: F401

pytestmark = pytest.mark.integration


def _enrol(base: str, url: str) -> list[str]:
    """Three devices on 1.0.0, in groups cameras (2) and doors (1)."""
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    for group in ("cameras", "doors"):
        assert httpx.put(f"{base}/api/v1/groups/{group}", json={}, headers=admin).is_success
    ids = []
    for i, group in enumerate(("cameras", "cameras", "doors")):
        body = httpx.post(
            f"{base}/api/v1/devices/register",
            json={
                "enrollment_token": enrollment,
                "hostname": f"dev-{i}",
                "hardware": "pi4",
                "serial": f"RB{i}",
                "image_version": "1.0.0",
                "booted_slot": "a",
            },
        ).json()
        auth = {"Authorization": f"Bearer {body['device_token']}"}
        httpx.post(
            f"{base}/api/v1/devices/{body['device_id']}/heartbeat", json=heartbeat(), headers=auth
        )
        httpx.patch(
            f"{base}/api/v1/devices/{body['device_id']}", json={"group": group}, headers=admin
        )
        ids.append(body["device_id"])
    return ids


def test_an_operator_creates_a_scheduled_rollout_from_the_release_page(browser, tmp_path: Path):  # noqa: F811
    url, env = _site(tmp_path)
    with overlord_process(env, log=tmp_path / "dash.log") as base:
        devices = _enrol(base, url)
        wait = WebDriverWait(browser, 20)
        _log_in(browser, base, create_token(url, KeyRole.VIEWER))
        browser.find_element(By.ID, "releases-link").click()
        rows = browser.find_elements(By.CSS_SELECTOR, "#release-table tr.release")
        assert [r.get_attribute("data-release") for r in rows] == ["os/1.1.0", "os/1.0.0"]
        assert "3 devices" in rows[1].text and "cameras 2 · doors 1" in rows[1].text
        assert not browser.find_elements(By.ID, "rollout-form"), "a viewer sees no form"
        _log_out(browser)

        _log_in(browser, base, create_token(url, KeyRole.OPERATOR))
        browser.get(f"{base}/dashboard/releases")
        Select(browser.find_element(By.ID, "rf-release")).select_by_value("os/1.1.0")
        browser.find_element(By.ID, "rf-name").send_keys("cams-1.1.0")
        groups = Select(browser.find_element(By.ID, "rf-groups"))
        groups.select_by_value("cameras")
        groups.select_by_value("doors")
        browser.find_element(By.ID, "rf-exclude-devices").send_keys(devices[2])
        stages = browser.find_element(By.ID, "rf-stages")
        stages.clear()
        stages.send_keys("100")
        start = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
        # Typing into a datetime-local field follows the browser's locale: set its value.
        field = browser.find_element(By.ID, "rf-start-at")
        browser.execute_script(
            "arguments[0].value = arguments[1]", field, start.strftime("%Y-%m-%dT%H:%M:%S")
        )
        browser.find_element(By.ID, "rf-submit").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "rollout-state")))
        assert browser.find_element(By.ID, "rollout-state").text == "pending"
        assert (
            browser.find_element(By.ID, "rollout-targeting").text
            == f"groups cameras,doors; excluding device {devices[2]}"
        )
        assert browser.find_element(By.ID, "rollout-start-at").text == (
            f"{start:%Y-%m-%d %H:%M:%S} UTC"
        )
        browser.find_element(By.LINK_TEXT, "releases").click()
        row = browser.find_element(By.CSS_SELECTOR, "#release-table tr[data-release='os/1.1.0']")
        assert "cams-1.1.0" in row.text and "pending" in row.text

        # A refusal comes back on the page, naming the field, with the values kept.
        browser.find_element(By.ID, "rf-name").send_keys("late")
        browser.execute_script(
            "arguments[0].value = '2020-01-01T06:00:00'", browser.find_element(By.ID, "rf-start-at")
        )
        browser.find_element(By.ID, "rf-submit").click()
        error = wait.until(
            expected_conditions.presence_of_element_located((By.ID, "rollout-error"))
        )
        assert "start_at" in error.text and "in the past" in error.text
        assert browser.find_element(By.ID, "rf-name").get_attribute("value") == "late"
