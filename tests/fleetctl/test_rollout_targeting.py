"""``fleetctl rollouts create`` with several groups, exclusions and a schedule, through its
own process against a real Overlord; bad targeting and schedules are one line naming the field."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from overlord.db import utcnow
from tests.fleetctl.conftest import Fleet, one_line_error


def _grouped(fleet: Fleet) -> dict[str, str]:
    devices = {name: fleet.enroll(name.upper()) for name in ("cam1", "cam2", "door1", "lab1")}
    for group in ("cameras", "doors", "lab"):
        fleet.ok("groups", "create", group)
    for name, group in (("cam1", "cameras"), ("cam2", "cameras"), ("door1", "doors")):
        fleet.ok("devices", "move-group", devices[name], group)
    fleet.ok("devices", "move-group", devices["lab1"], "lab")
    fleet.ok("devices", "label", devices["cam2"], "bench=yes")
    return devices


def _create(fleet: Fleet, *args: str) -> list[str]:
    return ["rollouts", "create", "spring", "--kind", "os", "--version", "1.1.0", *args]


def _targeted_and_scheduled(fleet: Fleet) -> None:
    devices = _grouped(fleet)
    start = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    deadline = start + timedelta(hours=8)
    created = fleet.json(
        *_create(fleet),
        "--group", "cameras",
        "--group", "doors",
        "--hardware", "pi4",
        "--exclude-group", "lab",
        "--exclude-label", "bench=yes",
        "--exclude-device", devices["door1"],
        "--start-at", start.isoformat(),
        "--deadline", deadline.isoformat(),
        "--canary", "5",
        "--stages", "100",
    )  # fmt: skip
    assert created["state"] == "pending"
    assert created["selector"] == {
        "groups": ["cameras", "doors"],
        "labels": {},
        "hardware": ["pi4"],
        "boards": [],
        "exclude": {
            "groups": ["lab"],
            "labels": {"bench": "yes"},
            "hardware": [],
            "boards": [],
            "devices": [devices["door1"]],
        },
    }
    shown = dict(
        line.split(maxsplit=1)
        for line in fleet.ok("rollouts", "show", str(created["id"])).splitlines()
    )
    assert datetime.fromisoformat(shown["start_at"]) == start
    assert datetime.fromisoformat(shown["deadline"]) == deadline
    assert shown["targeting"] == "groups cameras,doors; hardware pi4"
    assert shown["excluding"] == f"group lab; label bench=yes; device {devices['door1']}"
    listed = fleet.ok("rollouts", "list")
    assert "START AT" in listed and "TARGETING" in listed and shown["start_at"] in listed
    fleet.ok("rollouts", "resume", str(created["id"]))  # start it now, not in an hour
    fleet.tick()
    admitted = fleet.json("rollouts", "show", str(created["id"]))["device_updates"]
    assert [u["device_id"] for u in admitted] == [devices["cam1"]]


def test_groups_exclusions_and_a_schedule_on_sqlite(fleet: Fleet):
    _targeted_and_scheduled(fleet)


@pytest.mark.integration
def test_groups_exclusions_and_a_schedule_on_postgresql(pg_fleet: Fleet):
    _targeted_and_scheduled(pg_fleet)


def test_bad_targeting_and_schedules_are_one_line_naming_the_field(fleet: Fleet):
    fleet.enroll("ONLY1")
    fleet.ok("groups", "create", "empty")
    past = (utcnow() - timedelta(hours=1)).isoformat()
    ahead = (utcnow() + timedelta(hours=1)).isoformat()
    for args, words in (
        (["--group", "empty"], "selector matches no active device: groups empty"),
        (["--group", "nowhere"], "selector.groups: no device group nowhere"),
        (["--exclude-device", "dev-nope"], "selector.exclude.devices: no device dev-nope"),
        (["--start-at", "2030-01-01T06:00:00"], "start_at: Input should have timezone info"),
        (["--start-at", past], "start_at: Value error, start_at"),
        (["--start-at", ahead, "--deadline", past], "deadline: Value error, deadline"),
        (["--hardware", "pi3"], "selector.hardware.0: Input should be"),
    ):
        err = one_line_error(fleet.run(*_create(fleet, *args)))
        assert words in err, (args, err)
    assert "--exclude-label must be KEY=VALUE" in one_line_error(
        fleet.run(*_create(fleet, "--exclude-label", "bench")), code=2
    )
    assert fleet.json("rollouts", "list") == []
