"""``fleetctl`` against a real Overlord: ``devices list --bootloader-below`` and ``--board``,
``rollouts create --min-bootloader`` and ``--board``/``--exclude-board``, and the held-back
reason ``devices show`` prints."""

from __future__ import annotations

import httpx
import pytest

from fleetcore.bootloader import TrybootSupport
from fleetcore.wire import BoardReport, BootloaderReport
from tests.fleetctl.conftest import Fleet, one_line_error
from tests.overlord.conftest import heartbeat

PI4_2023_05_11 = 1683786363
PI4_2024_04_15 = 1713186734
MINIMUM = "2024.4.15.47534"


def report(fleet: Fleet, device_id: str, *, board: str, eeprom: int) -> None:
    """A heartbeat from the device naming its board and EEPROM bootloader."""
    body = heartbeat("1.0.0")
    body["board"] = BoardReport(board=board).model_dump(mode="json")
    body["bootloader"] = BootloaderReport(
        version=eeprom, tryboot_ab=TrybootSupport.SUPPORTED
    ).model_dump(mode="json")
    answer = httpx.post(
        f"{fleet.url}/api/v1/devices/{device_id}/heartbeat",
        json=body,
        headers=fleet.devices[device_id],
    )
    assert answer.status_code == 204, answer.text


def _held_back(fleet: Fleet) -> None:
    new, old = fleet.enroll("NEW1"), fleet.enroll("OLD1")
    report(fleet, new, board="pi4", eeprom=PI4_2024_04_15)
    report(fleet, old, board="pi4", eeprom=PI4_2023_05_11)
    below = fleet.json("devices", "list", "--bootloader-below", MINIMUM)
    assert [d["id"] for d in below["items"]] == [old]
    created = fleet.json(
        "rollouts", "create", "spring", "--kind", "os", "--version", "1.1.0",
        "--min-bootloader", MINIMUM, "--canary", "2", "--stages", "100",
    )  # fmt: skip
    assert created["min_bootloader"] == MINIMUM
    fleet.tick()
    admitted = fleet.json("rollouts", "show", str(created["id"]))["device_updates"]
    assert [u["device_id"] for u in admitted] == [new]
    shown = fleet.ok("devices", "show", old)
    assert "needs bootloader 2024-04-15 13:12:14 or later; the device runs 2023-05-11" in shown


def test_held_back_below_the_minimum_on_sqlite(fleet: Fleet):
    _held_back(fleet)


@pytest.mark.integration
def test_held_back_below_the_minimum_on_postgresql(pg_fleet: Fleet):
    _held_back(pg_fleet)


def test_a_bad_minimum_is_one_line(fleet: Fleet):
    fleet.enroll("ONLY1")
    err = one_line_error(
        fleet.run(
            "rollouts", "create", "spring", "--kind", "os", "--version", "1.1.0",
            "--min-bootloader", "2024.4.31.0",
        )
    )  # fmt: skip
    assert "min_bootloader" in err and "not a bootloader version" in err, err


def _by_board(fleet: Fleet) -> None:
    pi400, cm4, pi4 = fleet.enroll("B400"), fleet.enroll("BCM4"), fleet.enroll("BPI4")
    for device_id, board in ((pi400, "pi400"), (cm4, "cm4"), (pi4, "pi4")):
        report(fleet, device_id, board=board, eeprom=PI4_2024_04_15)
    listed = fleet.json("devices", "list", "--board", "cm4")
    assert [d["id"] for d in listed["items"]] == [cm4]
    created = fleet.json(
        "rollouts", "create", "boards", "--kind", "os", "--version", "1.1.0",
        "--board", "pi400", "--board", "cm4", "--exclude-board", "pi4",
        "--canary", "5", "--stages", "100",
    )  # fmt: skip
    assert created["selector"]["boards"] == ["pi400", "cm4"]
    assert created["selector"]["exclude"]["boards"] == ["pi4"]
    fleet.tick()
    admitted = fleet.json("rollouts", "show", str(created["id"]))["device_updates"]
    assert sorted(u["device_id"] for u in admitted) == sorted([pi400, cm4])
    shown = dict(
        line.split(maxsplit=1)
        for line in fleet.ok("rollouts", "show", str(created["id"])).splitlines()
        if line.strip()
    )
    assert shown["targeting"] == "all; boards pi400,cm4"
    assert shown["excluding"] == "board pi4"


def test_boards_on_sqlite(fleet: Fleet):
    _by_board(fleet)


@pytest.mark.integration
def test_boards_on_postgresql(pg_fleet: Fleet):
    _by_board(pg_fleet)


def test_a_board_without_tryboot_is_one_line(fleet: Fleet):
    fleet.enroll("ONLY1")
    err = one_line_error(
        fleet.run("rollouts", "create", "z", "--kind", "os", "--version", "1.1.0",
                  "--board", "zero2w")
    )  # fmt: skip
    assert "selector.boards.0" in err and "no tryboot A/B boot" in err, err
