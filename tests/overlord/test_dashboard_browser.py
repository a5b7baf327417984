"""The version dashboard in headless Chromium (Debian's chromium and chromedriver)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from fleetcore.wire import EventKind, RoleStatus, UpdateState
from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.configvars import sealing
from overlord.db import make_engine
from tests.overlord.conftest import create_token, events, heartbeat
from tests.overlord.servers import overlord_process
from tests.overlord.tufrepo import make_repo

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
]


def have_chromium() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@contextlib.contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium through its chromedriver, quit on the way out. A host without
    them fails the test, as every missing service does: a skip would prove nothing."""
    if not have_chromium():
        pytest.fail("chromium and chromium-driver are needed: see scripts/apt-packages.txt")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(2)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser():
    with chromium() as driver:
        yield driver


def _seed(base: str, url: str) -> tuple[str, dict[str, str], str]:
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    devices = []
    for i in range(6):
        resp = httpx.post(
            f"{base}/api/v1/devices/register",
            json={
                "enrollment_token": enrollment,
                "hostname": f"cam-{i:02d}",
                "hardware": "pi4",
                "serial": f"D{i}",
                "image_version": "1.0.0",
                "booted_slot": "a",
            },
        )
        body = resp.json()
        auth = {"Authorization": f"Bearer {body['device_token']}"}
        camera = RoleStatus.model_validate(
            {"name": "camera", "version": "2.0.0", "health": "healthy" if i else "unhealthy"}
        )
        version = "1.1.0" if i < 2 else "1.0.0"
        state = UpdateState.IDLE if i != 3 else UpdateState.INSTALLING
        httpx.post(
            f"{base}/api/v1/devices/{body['device_id']}/heartbeat",
            json=heartbeat(version, state=state, roles=[camera]),
            headers=auth,
        )
        devices.append((body["device_id"], auth))
    resp = httpx.post(
        f"{base}/api/v1/rollouts",
        json={
            "name": "spring",
            "kind": "os",
            "version": "1.1.0",
            "canary_devices": 1,
            "stages": [100],
            "success_window_s": 0,
        },
        headers=admin,
    )
    assert resp.status_code == 201, resp.text
    deadline = time.monotonic() + 20
    while True:
        targeted = [
            (d, a)
            for d, a in devices
            if httpx.get(f"{base}/api/v1/devices/{d}/desired-state", headers=a).json().get("os")
        ]
        if targeted or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert targeted, "the engine never admitted a canary"
    canary, auth = targeted[0]
    httpx.post(
        f"{base}/api/v1/devices/{canary}/events",
        json=events(
            (1, EventKind.INSTALL_STARTED, "1.1.0", None),
            (2, EventKind.ROLLBACK, "1.1.0", "trial boot: docker.service failed health check"),
        ),
        headers=auth,
    )
    return canary, auth, create_token(url, KeyRole.VIEWER)


def _site(tmp_path: Path) -> tuple[str, dict[str, str]]:
    repo = make_repo(tmp_path / "tuf")
    repo.add_os("1.0.0")
    repo.add_os("1.1.0")
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    migrate.upgrade(make_engine(url))
    env = {
        "OVERLORD_DATABASE_URL": url,
        "OVERLORD_REPO_DIR": str(repo.path),
        "OVERLORD_KEYS_DIR": str(repo.keydir),
        "OVERLORD_ENGINE_INTERVAL_S": "0.5",
        "OVERLORD_CACHE_TTL_S": "0",
    }
    return url, env


def _log_in(browser, base: str, token: str) -> None:
    """Log in and wait for the dashboard: a click does not wait for the answer that sets the
    session cookie, and a page opened before it arrives is the login form again."""
    browser.get(f"{base}/dashboard/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login-submit").click()
    WebDriverWait(browser, 20).until(lambda d: "/dashboard/login" not in d.current_url)


def _log_out(browser) -> None:
    browser.find_element(By.CSS_SELECTOR, "header form button").click()
    WebDriverWait(browser, 20).until(lambda d: "/dashboard/login" in d.current_url)


def test_dashboard_shows_versions_rollouts_and_device_timelines(browser, tmp_path: Path):
    url, env = _site(tmp_path)
    shots = Path(os.environ.get("OVERLORD_SCREENSHOT_DIR", tmp_path))
    with overlord_process(env, log=tmp_path / "dash.log") as base:
        canary, auth, viewer = _seed(base, url)
        wait = WebDriverWait(browser, 20)
        browser.get(f"{base}/dashboard")
        assert "/dashboard/login" in browser.current_url
        browser.find_element(By.ID, "token").send_keys("not-a-token")
        browser.find_element(By.ID, "login-submit").click()
        error = (By.ID, "login-error")
        wait.until(expected_conditions.text_to_be_present_in_element(error, "unknown"))
        browser.find_element(By.ID, "token").send_keys(viewer)
        browser.find_element(By.ID, "login-submit").click()
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "images"), "1.1.0"))
        assert browser.find_element(By.ID, "total-devices").text == "6"
        assert "camera" in browser.find_element(By.ID, "roles").text
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "rollouts"), "Halted"))
        assert "docker.service failed health check" in browser.find_element(By.ID, "rollouts").text
        assert len(browser.find_elements(By.CSS_SELECTOR, "#device-table tr")) == 7
        browser.save_screenshot(str(shots / "dashboard-fleet.png"))

        browser.get(f"{base}/dashboard/devices/{canary}")
        assert "docker.service failed health check" in browser.find_element(By.ID, "rollbacks").text
        timeline = browser.find_element(By.ID, "timeline").text
        assert "rollback" in timeline and "install-started" in timeline
        # Live update: a new event shows up without reloading the page.
        httpx.post(
            f"{base}/api/v1/devices/{canary}/events",
            json=events((3, EventKind.SAFE_MODE_ENTERED, None, "camera role failed 3 times")),
            headers=auth,
        )
        wait.until(
            expected_conditions.text_to_be_present_in_element(
                (By.ID, "timeline"), "safe-mode-entered"
            )
        )
        browser.save_screenshot(str(shots / "dashboard-device.png"))


def test_an_admin_resumes_pauses_and_aborts_a_rollout_and_quarantines_a_device(
    browser, tmp_path: Path
):
    url, env = _site(tmp_path)
    with overlord_process(env, log=tmp_path / "dash.log") as base:
        canary, _auth, _viewer = _seed(base, url)
        wait = WebDriverWait(browser, 20)
        _log_in(browser, base, create_token(url, KeyRole.ADMIN))
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "rollouts"), "Halted"))

        def click(action: str) -> None:
            button = f"#rollouts button[data-rollout='spring'][data-action='{action}']"
            for _attempt in range(3):  # the live refresh may replace the row under us
                try:
                    browser.find_element(By.CSS_SELECTOR, button).click()
                    return
                except StaleElementReferenceException:
                    continue
            pytest.fail(f"the {action} button kept being replaced")

        def state_is(state: str) -> None:
            wait.until(
                expected_conditions.presence_of_element_located(
                    (By.CSS_SELECTOR, f"#rollouts tr.rollout[data-state='{state}']")
                )
            )

        click("resume")  # the operator overrides the halt
        state_is("running")
        click("pause")
        state_is("paused")
        click("abort")
        browser.switch_to.alert.accept()  # abort asks for confirmation
        state_is("aborted")
        assert not browser.find_elements(By.CSS_SELECTOR, "#rollouts button.action")

        browser.get(f"{base}/dashboard/devices/{canary}")
        Select(browser.find_element(By.ID, "status")).select_by_value("quarantined")
        browser.find_element(By.ID, "admin-status-submit").click()
        wait.until(
            expected_conditions.text_to_be_present_in_element((By.ID, "device-live"), "quarantined")
        )
        admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
        device = httpx.get(f"{base}/api/v1/devices/{canary}", headers=admin).json()
        assert device["admin_status"] == "quarantined"

        # Each of those clicks is in the audit log, attributed to the dashboard.
        browser.find_element(By.ID, "audit-link").click()
        rows = browser.find_elements(By.CSS_SELECTOR, "#audit-table tr.audit-entry")
        assert [(r.get_attribute("data-action"), r.get_attribute("data-via")) for r in rows] == [
            ("device.status", "dashboard"),
            ("rollout.abort", "dashboard"),
            ("rollout.pause", "dashboard"),
            ("rollout.resume", "dashboard"),
            ("dashboard.login", "dashboard"),
            ("rollout.create", "api"),
        ]
        assert "quarantined" in rows[0].text and "127.0.0.1" in rows[0].text
        Select(browser.find_element(By.ID, "audit-action")).select_by_value("rollout.pause")
        browser.find_element(By.CSS_SELECTOR, "#audit-filters button").click()
        wait.until(lambda driver: "action=rollout.pause" in driver.current_url)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#audit-table tr.audit-entry")) == 1


def test_the_device_page_shows_its_configuration_and_when_the_device_applied_it(
    browser, tmp_path: Path
):
    """Each variable with where it is set and what it overrides, secrets as ***; the state
    turns to applied, live, once the device's heartbeat reports the digest."""
    secret = "browser-secret-d00d"
    url, env = _site(tmp_path)
    env["OVERLORD_CONFIG_KEY"] = sealing.new_key()
    with overlord_process(env, log=tmp_path / "dash.log") as base:
        admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
        device = httpx.post(
            f"{base}/api/v1/devices/register",
            json={
                "enrollment_token": create_token(url, KeyRole.ENROLLMENT),
                "hostname": "cam-cfg",
                "hardware": "pi4",
                "image_version": "1.0.0",
                "booted_slot": "a",
            },
        ).json()
        device_id = device["device_id"]
        auth = {"Authorization": f"Bearer {device['device_token']}"}
        api = httpx.Client(base_url=f"{base}/api/v1", headers=admin)
        api.put("/groups/cameras", json={})
        api.patch(f"/devices/{device_id}", json={"group": "cameras"})
        for path, value, is_secret in (
            ("/config/fleet/CAMERA_FPS", "15", False),
            ("/config/groups/cameras/CAMERA_FPS", "25", False),
            ("/config/groups/cameras/RTSP_PASSWORD", secret, True),
        ):
            assert api.put(path, json={"value": value, "secret": is_secret}).is_success
        _log_in(browser, base, create_token(url, KeyRole.VIEWER))
        browser.get(f"{base}/dashboard/devices/{device_id}")

        def config_rows(driver: webdriver.Chrome) -> list[str] | None:
            # The live part of the page is swapped in by the browser: wait for its rows.
            rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#config-table tr")[1:]]
            return rows if len(rows) == 2 and all(rows) else None

        wait = WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))
        assert wait.until(config_rows) == [
            "CAMERA_FPS 25 group/cameras fleet",
            "RTSP_PASSWORD *** group/cameras —",
        ]
        assert browser.find_element(By.ID, "config-state").text == "not reported yet"
        state = httpx.get(f"{base}/api/v1/devices/{device_id}/desired-state", headers=auth)
        beat = heartbeat() | {"config_digest": state.json()["config_digest"]}
        httpx.post(f"{base}/api/v1/devices/{device_id}/heartbeat", json=beat, headers=auth)
        WebDriverWait(browser, 20).until(
            expected_conditions.text_to_be_present_in_element((By.ID, "config-state"), "applied")
        )
        assert secret not in browser.page_source
        api.close()
