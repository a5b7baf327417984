"""Lightweight devices follow a staged rollout to the end on a real Overlord on PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

import pytest

from fleetcore.version import Version
from fleetcore.wire import DesiredPrestage
from overlord.auth.models import KeyRole
from overlord.rollouts.models import RolloutState
from simulator.light import LightDevice, LightFleet, LightTiming
from simulator.operator import OperatorClient
from simulator.releases import build_release
from simulator.scale import Policy, measure_rollout
from simulator.server import serve
from simulator.site import Site, prepare_site


def test_default_policy_is_the_overlords():
    policy = Policy.default_staged()
    assert (policy.canary, policy.stages, policy.success_window_s) == (1, (10, 50, 100), 600)


def test_policy_waits_are_the_windows_before_the_stage_that_reaches_the_fraction():
    staged = Policy("staged", 1, (10, 50, 100), 600)
    assert staged.waits_before(0.95) == 3 * 600  # canaries, 10 %, 50 %
    assert staged.waits_before(0.5) == 2 * 600  # the 50 % stage itself reaches half
    assert Policy("no canary", 0, (100,), 600).waits_before(0.95) == 0
    assert Policy("all at once", 1, (100,), 0).waits_before(0.95) == 0


def test_a_staged_light_device_polls_at_the_hints_interval_like_the_agent():
    """``Agent.staged_poll_s``: the hint's poll_s once its release is staged, not before, and
    never for another version; scaled with the bench's clock."""
    fleet = LightFleet("http://127.0.0.1:9", LightTiming(poll_s=60.0, jitter=0.5, scale=10.0))
    rng = random.Random(7)
    device = LightDevice("dev-1", "token", Version("1.0.0"))
    device.hint = DesiredPrestage(version=Version("2.0.0"), manifest_target="os/2.0.0", poll_s=10)
    waits = [fleet._wait_s(device, rng) for _ in range(50)]
    assert all(30.0 <= w <= 90.0 for w in waits)  # hinted, not staged yet: the usual poll
    device.staged = Version("2.0.0")
    assert fleet._wait_s(device, rng) == 1.0  # 10 s at a tenth of real time
    # A newer hint: the staged slot is not its release.
    device.hint = device.hint.model_copy(update={"version": Version("3.0.0")})
    assert 30.0 <= fleet._wait_s(device, rng) <= 90.0
    slow = LightFleet("http://127.0.0.1:9", LightTiming(poll_s=0.5, jitter=0.0))
    device.hint = device.hint.model_copy(update={"version": device.staged})
    assert slow._wait_s(device, rng) == 0.5  # a hint never slows a device down
    asyncio.run(fleet.close())
    asyncio.run(slow.close())


def _bench_site(pg_database: str, tmp_path: Path) -> tuple[Site, str, str, Path, dict[str, str]]:
    """A site with enrolment and admin tokens, release 2.0.0 built, a fast engine's settings."""
    site = prepare_site(tmp_path, pg_database)
    enrollment = site.token(KeyRole.ENROLLMENT, "scale test")
    admin = site.token(KeyRole.ADMIN, "scale test")
    build = build_release(tmp_path, Version("2.0.0"))
    return site, enrollment, admin, build, site.env(engine_interval_s=0.5, cache_ttl_s=0.2)


@pytest.mark.integration
def test_light_fleet_commits_a_staged_rollout(pg_database: str, tmp_path: Path):
    site, enrollment, admin, build, env = _bench_site(pg_database, tmp_path)

    async def scenario(url: str) -> None:
        fleet = LightFleet(url, LightTiming(poll_s=0.5, install_s=0.5, reboot_s=0.1))
        operator = OperatorClient(url, admin)
        try:
            await fleet.enroll(enrollment, 40, Version("1.0.0"))
            runner = asyncio.create_task(fleet.run())
            figure = await measure_rollout(
                site=site,
                operator=operator,
                fleet=fleet,
                build=build,
                version=Version("2.0.0"),
                policy=Policy("staged", 1, (10, 50, 100), 1),
                timeout_s=120,
            )
            fleet.stop.set()
            await runner
            versions = operator.versions()
        finally:
            operator.close()
            await fleet.close()
        assert figure.state is RolloutState.COMPLETED
        assert 0 < figure.to_fraction_s <= figure.to_all_s
        assert len(fleet.committed(Version("2.0.0"))) == 40
        assert [d.last_error for d in fleet.devices if d.errors] == []
        assert versions == {"2.0.0": 40}
        # Devices waiting for a later stage staged the release first (ADR 0082).
        assert any(d.staged == Version("2.0.0") for d in fleet.devices)

    with serve(env=env, workers=2, log=tmp_path / "overlord.log") as url:
        asyncio.run(scenario(url))


def test_the_clock_ratio_is_time_taken_over_time_asked_between_two_readings():
    fleet = LightFleet("http://127.0.0.1:9", LightTiming())
    fleet.devices = [LightDevice("a", "t", Version("1.0.0")), LightDevice("b", "t", Version("1"))]
    before = fleet.clock()
    fleet.devices[0].asked_s, fleet.devices[0].took_s = 10.0, 11.0  # 60 s polls
    fleet.devices[1].asked_s, fleet.devices[1].took_s = 30.0, 30.3  # 10 s staged polls
    assert fleet.clock_ratio(before, fleet.clock()) == pytest.approx(41.3 / 40.0)
    assert math.isnan(fleet.clock_ratio(before, before))
    asyncio.run(fleet.close())


@pytest.mark.integration
def test_a_scheduled_rollout_starts_with_every_device_staged(pg_database: str, tmp_path: Path):
    """Scheduled a few seconds ahead, the rollout's targets, the canary among them, all stage
    before its start (ADR 0082 addendum); nobody commits before it, and the figures count
    from the start."""
    site, enrollment, admin, build, env = _bench_site(pg_database, tmp_path)

    async def scenario(url: str) -> None:
        timing = LightTiming(poll_s=0.5, install_s=0.5, reboot_s=0.1)
        fleet = LightFleet(url, timing)
        operator = OperatorClient(url, admin)
        try:
            await fleet.enroll(enrollment, 30, Version("1.0.0"))
            runner = asyncio.create_task(fleet.run())
            before = fleet.clock()
            figure = await measure_rollout(
                site=site,
                operator=operator,
                fleet=fleet,
                build=build,
                version=Version("2.0.0"),
                policy=Policy("scheduled", 1, (50, 100), 1),
                timeout_s=120,
                start_in_s=5.0,
            )
            ratio = fleet.clock_ratio(before, fleet.clock())
            fleet.stop.set()
            await runner
        finally:
            operator.close()
            await fleet.close()
        assert figure.state is RolloutState.COMPLETED
        assert figure.staged_at_start == 30
        assert 0 < figure.to_fraction_s <= figure.to_all_s
        assert [d.last_error for d in fleet.devices if d.errors] == []
        assert ratio >= 1.0  # a cycle never comes before its device asked for it

    with serve(env=env, workers=2, log=tmp_path / "overlord.log") as url:
        asyncio.run(scenario(url))
