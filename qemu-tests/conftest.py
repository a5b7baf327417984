"""Fixtures of the qemu tier: the cached guest assets, a fresh test card, a simulated Pi.

A failed test that used a :class:`harness.board.SimulatedPi` prints its boot decisions and
serial console (see :func:`harness.report.failure_sections`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import testdisk
from harness.board import Deadlines, SimulatedPi
from harness.debian import DebianCache
from harness.report import failure_sections
from harness.testdisk import GuestAssets

from fleetcore.run import run

# Generous beside a measured 2.5 s boot to the healthy marker (19 s seen with the 2-core host
# at load 10), so a loaded host does not reset a sound boot; the watchdog scenario pays it once.
WATCHDOG_SECONDS = 60.0
SESSION_SECONDS = 180.0


@pytest.fixture(scope="session")
def guest_assets() -> GuestAssets:
    return testdisk.guest_assets(DebianCache())


@pytest.fixture(scope="session")
def golden_card(tmp_path_factory: pytest.TempPathFactory, guest_assets: GuestAssets) -> Path:
    """The test card built once per session; each test boots its own copy."""
    image = tmp_path_factory.mktemp("golden") / "card.img"
    started = time.monotonic()
    testdisk.build_disk(image, guest_assets, testdisk.build_initramfs(guest_assets))
    print(f"test card built in {time.monotonic() - started:.1f} s")
    return image


@pytest.fixture
def card(tmp_path: Path, golden_card: Path) -> Path:
    image = tmp_path / "card.img"
    run(["cp", "--sparse=always", golden_card, image])
    return image


@pytest.fixture
def pi(card: Path, tmp_path: Path) -> SimulatedPi:
    return SimulatedPi(
        card,
        tmp_path / "board",
        healthy_marker=testdisk.HEALTHY_MARKER,
        deadlines=Deadlines(watchdog=WATCHDOG_SECONDS, session=SESSION_SECONDS),
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        funcargs = getattr(item, "funcargs", {})
        boards = [value for value in funcargs.values() if isinstance(value, SimulatedPi)]
        report.sections.extend(failure_sections(boards))
