"""``fleetctl config get|set|unset`` through its own process against ``overlord serve``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from overlord import migrate
from overlord.configvars import sealing
from overlord.db import make_engine
from tests.fleetctl.conftest import Fleet, _serve, one_line_error
from tests.overlord.servers import overlord_serve

SECRET = "fleetctl-typed-secret-42"


@pytest.fixture
def keyed_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """``overlord serve`` with OVERLORD_CONFIG_KEY, logging JSON lines to overlord.log."""
    url = f"sqlite:///{tmp_path / 'overlord.db'}"
    migrate.upgrade(make_engine(url))
    yield from _serve(
        url,
        tmp_path,
        server=overlord_serve,
        FLEET_LOG_FORMAT="json",
        OVERLORD_CONFIG_KEY=sealing.new_key(),
    )


def _cameras(fleet: Fleet) -> str:
    device = fleet.enroll("CAM001")
    fleet.ok("groups", "create", "cameras")
    fleet.ok("devices", "move-group", device, "cameras")
    return device


def test_set_get_and_unset_at_the_fleet_a_group_and_a_device(fleet: Fleet):
    device = _cameras(fleet)
    assert fleet.ok("config", "set", "CAMERA_FPS=15") == "set CAMERA_FPS at the fleet\n"
    fleet.ok("config", "set", "--group", "cameras", "CAMERA_FPS=25", "SITE=north", "EMPTY=")
    fleet.ok("config", "set", "--device", device, "CAMERA_FPS=30")

    table = fleet.ok("config", "get", "--group", "cameras").splitlines()
    assert table[0].split() == ["KEY", "VALUE", "SECRET", "UPDATED"]
    assert [line.split()[:2] for line in table[1:]] == [
        ["CAMERA_FPS", "25"],
        ["EMPTY", "no"],  # an empty value, then SECRET no
        ["SITE", "north"],
    ]
    only = fleet.json("config", "get", "--group", "cameras", "SITE")
    assert [(v["key"], v["value"]) for v in only] == [("SITE", "north")]
    effective = fleet.ok("config", "get", "--device", device, "--effective").splitlines()
    assert effective[0].split() == ["KEY", "VALUE", "FROM", "OVERRIDES"]
    assert effective[1].split() == ["CAMERA_FPS", "30", f"device/{device}", "group/cameras,fleet"]
    assert effective[-1].endswith(": not reported yet")

    assert fleet.ok("config", "unset", "--device", device, "CAMERA_FPS").startswith("unset")
    merged = fleet.json("config", "get", "--device", device, "--effective")
    assert {v["key"]: (v["value"], v["source"]) for v in merged["variables"]} == {
        "CAMERA_FPS": ("25", "group/cameras"),
        "EMPTY": ("", "group/cameras"),
        "SITE": ("north", "group/cameras"),
    }
    answer = fleet.json("config", "unset", "--group", "cameras", "EMPTY", "SITE")
    assert [v["key"] for v in answer["variables"]] == ["CAMERA_FPS"]


def test_bad_input_is_one_line_and_stores_nothing(fleet: Fleet):
    device = _cameras(fleet)
    fleet.ok("config", "set", "--group", "cameras", "KEEP=1")
    usage = (
        ("config", "set", "camera_fps=1"),
        ("config", "set", "NOVALUE"),
        ("config", "set", "A=1", "A=2"),
        ("config", "set", "--group", "cameras", "--device", device, "A=1"),
        ("config", "get", "--effective"),
        ("config", "unset", "lower"),
    )
    for args in usage:
        result = fleet.run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
    missing = fleet.run("config", "unset", "--group", "cameras", "KEEP", "NOPE")
    assert "NOPE not set" in one_line_error(missing)
    too_long = fleet.run("config", "set", "--group", "cameras", "KEEP=2", "BIG=" + "x" * 4097)
    assert "set.BIG.value" in one_line_error(too_long)
    no_group = fleet.run("config", "set", "--group", "nope", "A=1")
    assert "no device group nope" in one_line_error(no_group)
    no_key = fleet.run("config", "set", "--secret", "TOKEN_A=abcdef")
    error = one_line_error(no_key)
    assert "OVERLORD_CONFIG_KEY" in error and "overlord config-key" in error
    assert "abcdef" not in no_key.stdout + no_key.stderr
    not_set = fleet.run("config", "get", "--group", "cameras", "NOPE")
    assert "NOPE not set at group cameras" in one_line_error(not_set)
    rows = fleet.json("config", "get", "--group", "cameras")
    assert [(row["key"], row["value"]) for row in rows] == [("KEEP", "1")]
    assert fleet.json("config", "get") == []


def test_a_secret_typed_on_stdin_is_sent_only_to_the_device(keyed_fleet: Fleet, tmp_path: Path):
    fleet = keyed_fleet
    device = _cameras(fleet)
    fleet.ok("config", "set", "--group", "cameras", "--secret", "RTSP_PASSWORD", stdin=SECRET)
    fleet.ok("config", "set", "--device", device, "--secret", f"API_TOKEN={SECRET}-2")
    printed = [
        fleet.ok("config", "get", "--group", "cameras"),
        fleet.ok("config", "get", "--group", "cameras", "--json"),
        fleet.ok("config", "get", "--device", device, "--effective"),
        fleet.ok("config", "get", "--device", device, "--effective", "--json"),
        fleet.ok("audit", "list"),
        fleet.ok("audit", "list", "--json"),
        fleet.ok("devices", "show", device, "--json"),
    ]
    assert "RTSP_PASSWORD  ***" in printed[0]
    assert "config.set" in printed[4] and "RTSP_PASSWORD" in printed[5]
    server_log = (tmp_path / "overlord.log").read_text()
    assert "config.set" in server_log
    for said in (*printed, server_log):
        assert SECRET not in said
    desired = httpx.get(
        f"{fleet.url}/api/v1/devices/{device}/desired-state", headers=fleet.devices[device]
    ).json()
    assert desired["config"]["RTSP_PASSWORD"] == {"value": SECRET, "secret": True}
