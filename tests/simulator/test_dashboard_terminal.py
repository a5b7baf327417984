"""The device page's terminal in headless Chromium: an admin opens a shell on a simulated
device (the real updater's agent, its fleet.yaml allowing shells), the xterm.js terminal
shows the prompt, a typed command's output comes back, and End session ends it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from overlord.remote import asciicast
from tests.overlord.test_dashboard_browser import _log_in, chromium
from tests.simulator.remote import enrolled_device

pytestmark = pytest.mark.integration
SCREEN = "#shell-terminal .xterm-rows"
STTY = re.compile(r"^(\d+) (\d+)$", re.MULTILINE)  # what `stty size` prints: rows, columns


def _screen(driver: WebDriver) -> str:
    return "\n".join(row.text for row in driver.find_elements(By.CSS_SELECTOR, f"{SCREEN} > div"))


def test_an_admin_runs_a_command_in_the_device_pages_terminal(tmp_path: Path):
    shots = Path(os.environ.get("OVERLORD_SCREENSHOT_DIR", tmp_path))
    with (
        enrolled_device(tmp_path, "sim-shell", remote_shell=True) as sim,
        chromium() as browser,
    ):
        base, device_id, agent = sim.base, sim.device_id, sim.agent
        admin = {"Authorization": f"Bearer {sim.admin}"}
        allowed = httpx.put(
            f"{base}/api/v1/config/devices/{device_id}/FLEET_REMOTE_SHELL",
            json={"value": "1"},
            headers=admin,
        )
        assert allowed.status_code == 200, allowed.text

        _log_in(browser, base, sim.admin)
        browser.get(f"{base}/dashboard/devices/{device_id}")
        browser.find_element(By.ID, "shell-open").click()
        wait = WebDriverWait(browser, 30)
        state = (By.ID, "shell-state")
        wait.until(expected_conditions.text_to_be_present_in_element(state, "waiting"))
        agent.cycle()  # the desired state names the session: the agent joins it
        wait.until(expected_conditions.text_to_be_present_in_element(state, "connected"))
        wait.until(lambda d: _screen(d).strip())  # the login shell's prompt
        typed = browser.find_element(By.CSS_SELECTOR, "#shell-terminal textarea")
        typed.send_keys("echo dash-$((6*7))\n")
        wait.until(lambda d: "dash-42" in _screen(d))
        browser.save_screenshot(str(shots / "dashboard-terminal.png"))
        browser.set_window_size(900, 900)  # the terminal is fitted again: a smaller PTY
        typed.send_keys("stty size\n")
        wait.until(lambda d: STTY.search(_screen(d).split("stty size", 1)[-1]))
        browser.find_element(By.ID, "shell-end").click()
        wait.until(expected_conditions.text_to_be_present_in_element(state, "session ended"))
        screen = _screen(browser)
        assert "ended from the dashboard" in screen
        agent.remote.stop()
        sessions = httpx.get(f"{base}/api/v1/devices/{device_id}/remote-sessions", headers=admin)
        [ended] = sessions.json()
        cast = httpx.get(f"{base}/api/v1/remote-sessions/{ended['id']}/recording", headers=admin)
    assert (ended["end_reason"], ended["end_detail"]) == ("operator", "ended from the dashboard")
    assert ended["opened_by"] == "test admin"
    # The browser's resizes reached the device's PTY: what stty printed is the last one sent.
    _header, events = asciicast.load(cast.text)
    sizes = [data for _at, code, data in events if code == "r"]
    assert len(set(sizes)) >= 2, sizes
    cols, rows = sizes[-1].split("x")
    printed = STTY.search(screen.split("stty size", 1)[-1])
    assert printed is not None and printed.groups() == (rows, cols), (printed, sizes)
