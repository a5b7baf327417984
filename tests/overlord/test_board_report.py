"""The board a device reports in its heartbeat (model, revision, RAM) is kept in the stored
heartbeat's JSON and shown by GET /devices/{id} and the dashboard's device page."""

from __future__ import annotations

from fastapi.testclient import TestClient

from fleetcore.wire import BoardReport
from overlord.auth.models import KeyRole
from tests.overlord.conftest import Overlord, heartbeat

PI5 = BoardReport(
    board="pi5", model="Raspberry Pi 5 Model B Rev 1.0", revision="d04170", memory_mib=8192
)


def _beat(overlord: Overlord, device_id: str, auth: dict[str, str], board: BoardReport | None):
    body = heartbeat("1.0.0")
    if board is not None:
        body["board"] = board.model_dump(mode="json")
    resp = overlord.client.post(f"/api/v1/devices/{device_id}/heartbeat", json=body, headers=auth)
    assert resp.status_code == 204, resp.text


def test_the_api_shows_the_last_reported_board(overlord: Overlord):
    device_id, auth = overlord.enroll("BRD1")
    url = f"/api/v1/devices/{device_id}"
    assert overlord.client.get(url, headers=overlord.as_admin()).json()["board"] is None
    _beat(overlord, device_id, auth, PI5)
    device = overlord.client.get(url, headers=overlord.as_admin()).json()
    assert device["board"] == PI5.model_dump(mode="json")
    _beat(overlord, device_id, auth, None)  # an older updater: no board in its heartbeat
    assert overlord.client.get(url, headers=overlord.as_admin()).json()["board"] is None
    listed = overlord.client.get("/api/v1/devices", headers=overlord.as_admin()).json()
    assert listed["items"][0]["board"] is None  # the list costs no heartbeat look-up


def test_the_device_page_shows_board_revision_and_ram(overlord: Overlord):
    device_id, auth = overlord.enroll("BRD2")
    _beat(overlord, device_id, auth, PI5)
    browser = TestClient(overlord.client.app, base_url="http://overlord.test")
    resp = browser.post("/dashboard/login", data={"token": overlord.token(KeyRole.VIEWER)})
    assert resp.status_code == 200, resp.text
    page = browser.get(f"/dashboard/devices/{device_id}").text
    assert (
        '<dd id="board">Raspberry Pi 5 Model B Rev 1.0 · revision d04170 · 8192 MiB RAM</dd>'
        in page
    )


def test_a_board_report_out_of_bounds_is_refused(overlord: Overlord):
    device_id, auth = overlord.enroll("BRD3")
    url = f"/api/v1/devices/{device_id}/heartbeat"
    for board in (
        {"board": "pi5", "model": "x" * 129},
        {"board": "pi5", "revision": "d04170zz"},
        {"board": "Pi 5"},
        {"board": "pi5", "memory_mib": -1},
        {"board": "pi5", "model": "nul\u0000"},
    ):
        body = dict(heartbeat("1.0.0"), board=board)
        assert overlord.client.post(url, json=body, headers=auth).status_code == 422, board
