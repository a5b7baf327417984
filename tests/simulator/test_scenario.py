"""The demo's scenario rules, checked against the Overlord's own stage arithmetic."""

from __future__ import annotations

from overlord.rollouts import plan
from overlord.rollouts.models import RolloutState
from simulator.scenario import Scenario

IDS = [f"dev-{i:03d}" for i in range(20)]


def test_order_is_the_overlords_admission_order():
    scenario = Scenario("demo-2.0.0")
    ordered = scenario.order(IDS)
    assert sorted(ordered) == sorted(IDS)
    keys = [plan.admission_order("demo-2.0.0", d) for d in ordered]
    assert keys == sorted(keys)


def test_stage_bounds_cover_every_device_once():
    assert Scenario("r").bounds(20) == [(0, 1), (1, 2), (2, 10), (10, 20)]
    assert Scenario("r").bounds(6) == [(0, 1), (1, 1), (1, 3), (3, 6)]


def test_failing_devices_follow_the_canary_and_first_stage():
    scenario = Scenario("demo-2.0.0")
    ordered = scenario.order(IDS)
    failing = scenario.pick_failing(IDS, 2)
    assert failing == ordered[2:4]
    assert scenario.expect(IDS, failing).state is RolloutState.HALTED
    assert scenario.expect(IDS, failing).stage == "50%"


def test_no_failures_complete():
    scenario = Scenario("demo-2.0.0")
    assert scenario.pick_failing(IDS, 0) == []
    assert scenario.expect(IDS, []).state is RolloutState.COMPLETED


def test_failures_under_the_threshold_complete():
    ids = [f"dev-{i:04d}" for i in range(200)]
    scenario = Scenario("big")
    # The 50% stage admits 80 devices: 4 failures are exactly 5%, not above it.
    failing = scenario.pick_failing(ids, 4)
    assert scenario.expect(ids, failing).state is RolloutState.COMPLETED
    assert scenario.expect(ids, scenario.pick_failing(ids, 5)).state is RolloutState.HALTED


def test_a_failing_canary_halts_at_the_canary():
    scenario = Scenario("r")
    canary = scenario.order(IDS)[:1]
    expected = scenario.expect(IDS, canary)
    assert (expected.state, expected.stage) == (RolloutState.HALTED, "canary")


def test_more_failing_devices_than_fit_after_the_first_stage_take_the_last_ones():
    scenario = Scenario("r")
    ids = IDS[:4]
    assert scenario.pick_failing(ids, 4) == scenario.order(ids)
