"""Targeting by board, not only by release family: the board each device's last heartbeat
reported is a column (migration 0013); GET /devices filters on it and a rollout's selector
takes ``boards`` and ``exclude.boards`` beside ``hardware``. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from fleetcore.wire import BoardReport
from tests.overlord.conftest import Overlord, heartbeat
from tests.overlord.test_rollout_targeting import _admitted
from tests.overlord.test_rollouts import _create, _tick

BOARDS = ("pi4", "pi400", "cm4", "cm4-again", None)


@pytest.fixture
def boards(overlord: Overlord) -> dict[str | None, str]:
    """One device per board (a second CM4, and one whose agent reports no board)."""
    ids: dict[str | None, str] = {}
    for i, name in enumerate(BOARDS):
        device_id, auth = overlord.enroll(f"BD{i}", hostname=f"pi-{i}")
        body = heartbeat()
        if name is not None:
            body["board"] = BoardReport(board=name.split("-")[0]).model_dump(mode="json")
        url = f"/api/v1/devices/{device_id}/heartbeat"
        assert overlord.client.post(url, json=body, headers=auth).status_code == 204
        ids[name] = device_id
    return ids


def test_the_device_list_filters_by_board(overlord: Overlord, boards: dict[str | None, str]):
    listed = overlord.client.get(
        "/api/v1/devices", params={"board": "cm4"}, headers=overlord.as_admin()
    ).json()
    assert {d["id"] for d in listed["items"]} == {boards["cm4"], boards["cm4-again"]}
    refused = overlord.client.get(
        "/api/v1/devices", params={"board": "pi2"}, headers=overlord.as_admin()
    )
    assert refused.status_code == 422


def test_a_rollout_targets_boards_and_excludes_others(
    overlord: Overlord, boards: dict[str | None, str]
):
    rollout = _create(
        overlord,
        canary_devices=10,
        stages=[100],
        selector={"boards": ["pi400", "cm4"], "hardware": ["pi4"]},
    )
    assert rollout["selector"]["boards"] == ["pi400", "cm4"]
    _tick(overlord)
    assert _admitted(overlord, rollout["id"]) == {
        boards["pi400"],
        boards["cm4"],
        boards["cm4-again"],
    }
    excluding = _create(
        overlord,
        name="r2",
        kind="role",
        role="camera",
        version="2.0.0",
        canary_devices=10,
        stages=[100],
        selector={"exclude": {"boards": ["cm4"]}},
    )
    _tick(overlord)
    # A device that never reported its board is not excluded by a board.
    assert _admitted(overlord, excluding["id"]) == {boards["pi4"], boards["pi400"], boards[None]}


@pytest.mark.parametrize(
    ("selector", "words"),
    [
        ({"boards": ["zero2w"]}, "no tryboot A/B boot"),
        ({"boards": ["pi2"]}, "Input should be 'pi4', 'pi400', 'cm4'"),
        ({"boards": ["pi5"]}, "selector matches no active device: all groups; boards pi5"),
        ({"boards": ["cm4"], "exclude": {"boards": ["cm4"]}}, "cm4 also targeted"),
        ({"exclude": {"boards": ["unknown"]}}, "no tryboot A/B boot"),
    ],
)
def test_bad_board_targeting_is_refused_naming_it(
    overlord: Overlord, boards: dict[str | None, str], selector: dict, words: str
):
    answer = _create(overlord, selector=selector, expect=422)
    assert words in str(answer["detail"]), answer
    assert overlord.client.get("/api/v1/rollouts", headers=overlord.as_admin()).json() == []
