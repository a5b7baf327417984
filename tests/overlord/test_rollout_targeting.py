"""Rollout targeting: several groups, labels, hardware and exclusions; a selector that matches
no device, names an unknown group or device, or is over-long is a 4xx naming the selector,
and nothing is stored. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from overlord.db import unit_of_work
from overlord.devices.models import Device
from tests.overlord.conftest import Overlord
from tests.overlord.test_rollouts import _create, _fleet, _tick


def _place(overlord: Overlord, device_id: str, **attributes: object) -> None:
    answer = overlord.client.patch(
        f"/api/v1/devices/{device_id}", json=attributes, headers=overlord.as_admin()
    )
    assert answer.status_code == 200, answer.text


def _group(overlord: Overlord, name: str) -> None:
    answer = overlord.client.put(f"/api/v1/groups/{name}", json={}, headers=overlord.as_admin())
    assert answer.status_code == 200, answer.text


def _admitted(overlord: Overlord, rollout_id: int) -> set[str]:
    rows = overlord.client.get(
        f"/api/v1/rollouts/{rollout_id}/devices", headers=overlord.as_admin()
    ).json()
    return {row["device_id"] for row in rows}


@pytest.fixture
def sites(overlord: Overlord) -> dict[str, str]:
    """Six devices: cameras (north, south, a lab one), doors (north), lab, and one ungrouped."""
    ids = list(_fleet(overlord, 6))
    for name in ("cameras", "doors", "lab"):
        _group(overlord, name)
    layout = {
        "cam-north": ("cameras", {"site": "north"}),
        "cam-south": ("cameras", {"site": "south"}),
        "cam-bench": ("cameras", {"site": "north", "bench": "yes"}),
        "door-north": ("doors", {"site": "north"}),
        "lab": ("lab", {"site": "north"}),
        "loose": (None, {}),
    }
    named = dict(zip(layout, ids, strict=True))
    for name, (group, labels) in layout.items():
        _place(overlord, named[name], group=group, labels=labels)
    return named


def test_groups_labels_and_exclusions_pick_the_devices(overlord: Overlord, sites: dict[str, str]):
    rollout = _create(
        overlord,
        canary_devices=10,
        stages=[100],
        selector={
            "groups": ["cameras", "doors"],
            "labels": {"site": "north"},
            "exclude": {"labels": {"bench": "yes"}, "devices": [sites["door-north"]]},
        },
    )
    assert rollout["selector"]["groups"] == ["cameras", "doors"]
    assert rollout["selector"]["exclude"]["devices"] == [sites["door-north"]]
    _tick(overlord)
    assert _admitted(overlord, rollout["id"]) == {sites["cam-north"]}


def test_an_excluded_group_and_hardware_leave_the_rest_of_the_fleet(
    overlord: Overlord, sites: dict[str, str]
):
    rollout = _create(
        overlord,
        canary_devices=10,
        stages=[100],
        selector={"exclude": {"groups": ["lab", "cameras"], "hardware": ["pi5"]}},
    )
    _tick(overlord)
    assert _admitted(overlord, rollout["id"]) == {sites["door-north"], sites["loose"]}
    other = _create(
        overlord,
        name="r2",
        kind="role",
        role="camera",
        version="2.0.0",
        selector={"exclude": {"hardware": ["pi4"]}, "groups": ["doors"]},
        expect=422,
    )
    assert "selector matches no active device" in other["detail"]


def test_a_quarantined_device_does_not_count_as_a_match(overlord: Overlord):
    (device_id,) = _fleet(overlord, 1)
    overlord.client.patch(
        f"/api/v1/devices/{device_id}/status",
        json={"status": "quarantined"},
        headers=overlord.as_admin(),
    )
    refused = _create(overlord, expect=422)
    assert refused["detail"] == "selector matches no active device: all groups"
    assert "fleetctl devices list" in refused["hint"]


@pytest.mark.parametrize(
    ("selector", "status", "words"),
    [
        ({"groups": ["nowhere"]}, 404, "selector.groups: no device group nowhere"),
        ({"exclude": {"groups": ["gone"]}}, 404, "selector.exclude.groups: no device group gone"),
        ({"exclude": {"devices": ["dev-missing"]}}, 422, "selector.exclude.devices: no device"),
        ({"labels": {"site": "mars"}}, 422, "matches no active device: all groups; label site"),
        (
            {"groups": ["cameras"], "exclude": {"groups": ["cameras"]}},
            422,
            "selector.exclude.groups: cameras also targeted",
        ),
        ({"group": "cameras"}, 422, "Extra inputs"),
        ({"exclude": {"serials": ["x"]}}, 422, "Extra inputs"),
        ({"groups": ["x" * 65]}, 422, "String should match pattern"),
        ({"exclude": {"devices": ["d"] * 1001}}, 422, "at most 1000 items"),
        ({"groups": [f"g{i}" for i in range(65)]}, 422, "at most 64 items"),
    ],
)
def test_bad_targeting_is_a_4xx_naming_the_selector_and_stores_nothing(
    overlord: Overlord, sites: dict[str, str], selector: dict, status: int, words: str
):
    answer = _create(overlord, selector=selector, expect=status)
    detail = answer["detail"]
    text = (
        detail
        if isinstance(detail, str)
        else " ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in detail)
    )
    assert words in text
    assert "selector" in text
    assert overlord.client.get("/api/v1/rollouts", headers=overlord.as_admin()).json() == []
    with unit_of_work(overlord.ctx.sessions) as session:
        assert all(d.open_update is False for d in session.query(Device))
