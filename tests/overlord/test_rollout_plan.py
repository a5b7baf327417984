"""The pure rollout rules."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from fleetcore.wire import EventKind, UpdateState
from overlord.rollouts import plan
from overlord.rollouts.models import DeviceOutcome, ReleaseKind


@pytest.mark.parametrize(
    ("stage", "total", "expected"),
    [(0, 40, 1), (1, 40, 4), (2, 40, 20), (3, 40, 40), (1, 3, 1), (0, 0, 0), (1, 5, 1)],
)
def test_stage_targets_grow_from_canary_to_everyone(stage, total, expected):
    assert plan.stage_target(stage=stage, total=total, canary=1, stages=[10, 50, 100]) == expected


def test_stage_labels():
    assert [plan.stage_label(i, [10, 100]) for i in range(4)] == ["canary", "10%", "100%", "done"]


@pytest.mark.parametrize(
    ("now", "start", "end", "inside"),
    [
        (time(2, 30), time(2, 0), time(4, 0), True),
        (time(4, 0), time(2, 0), time(4, 0), False),
        (time(23, 30), time(22, 0), time(3, 0), True),
        (time(2, 59), time(22, 0), time(3, 0), True),
        (time(12, 0), time(22, 0), time(3, 0), False),
        (time(12, 0), None, None, True),
    ],
)
def test_maintenance_windows_wrap_midnight(now, start, end, inside):
    moment = datetime(2026, 1, 1, now.hour, now.minute, tzinfo=UTC)
    assert plan.in_window(moment, start, end) is inside


def test_halt_only_past_the_threshold():
    assert not plan.should_halt(plan.StageTally(admitted=20, failed=1), 0.05)
    assert plan.should_halt(plan.StageTally(admitted=19, failed=1), 0.05)
    assert plan.should_halt(plan.StageTally(admitted=1, failed=1), 0.05)
    assert not plan.should_halt(plan.StageTally(admitted=0, failed=0), 0.0)


def test_events_map_to_outcomes_for_their_version_only():
    def os_event(kind, version="2.0"):
        return plan.outcome_from_event(
            kind=ReleaseKind.OS,
            role=None,
            version="2.0",
            event_kind=kind,
            event_version=version,
            event_role=None,
        )

    assert os_event(EventKind.UPDATE_COMMITTED) is DeviceOutcome.SUCCEEDED
    assert os_event(EventKind.ROLLBACK) is DeviceOutcome.FAILED
    assert os_event(EventKind.INSTALL_STARTED) is DeviceOutcome.UPDATING
    assert os_event(EventKind.ROLLBACK, "1.9") is None
    role = plan.outcome_from_event(
        kind=ReleaseKind.ROLE,
        role="camera",
        version="3",
        event_kind=EventKind.ROLE_ROLLBACK,
        event_version="3",
        event_role="audio",
    )
    assert role is None


def test_heartbeat_on_target_version_is_success():
    outcome = plan.outcome_from_heartbeat(
        kind=ReleaseKind.OS,
        role=None,
        version="2.0",
        image_version="2.0",
        update_state=UpdateState.IDLE,
        roles=[],
    )
    assert outcome is DeviceOutcome.SUCCEEDED
    role = plan.outcome_from_heartbeat(
        kind=ReleaseKind.ROLE,
        role="camera",
        version="3",
        image_version="2.0",
        update_state=UpdateState.IDLE,
        roles=[{"name": "camera", "version": "3", "health": "healthy"}],
    )
    assert role is DeviceOutcome.SUCCEEDED


def test_outcomes_move_forward_and_failure_wins():
    assert (
        plan.next_outcome(DeviceOutcome.PENDING, DeviceOutcome.UPDATING) is DeviceOutcome.UPDATING
    )
    assert (
        plan.next_outcome(DeviceOutcome.SUCCEEDED, DeviceOutcome.UPDATING)
        is DeviceOutcome.SUCCEEDED
    )
    assert plan.next_outcome(DeviceOutcome.SUCCEEDED, DeviceOutcome.FAILED) is DeviceOutcome.FAILED
    assert plan.next_outcome(DeviceOutcome.FAILED, DeviceOutcome.SUCCEEDED) is DeviceOutcome.FAILED


def test_only_unfinished_devices_time_out_and_only_a_final_report_replaces_it():
    admitted = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    later = datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
    for outcome, expected in [
        (DeviceOutcome.PENDING, True),
        (DeviceOutcome.UPDATING, True),
        (DeviceOutcome.SUCCEEDED, False),
        (DeviceOutcome.FAILED, False),
        (DeviceOutcome.TIMED_OUT, False),
    ]:
        assert (
            plan.timed_out(outcome=outcome, admitted_at=admitted, now=later, timeout_s=7200)
            is expected
        )
    assert not plan.timed_out(
        outcome=DeviceOutcome.PENDING, admitted_at=admitted, now=later, timeout_s=7201
    )
    assert (
        plan.next_outcome(DeviceOutcome.TIMED_OUT, DeviceOutcome.UPDATING)
        is DeviceOutcome.TIMED_OUT
    )
    assert (
        plan.next_outcome(DeviceOutcome.TIMED_OUT, DeviceOutcome.SUCCEEDED)
        is DeviceOutcome.SUCCEEDED
    )
    assert plan.next_outcome(DeviceOutcome.TIMED_OUT, DeviceOutcome.FAILED) is DeviceOutcome.FAILED
    assert plan.timeout_reason(7200) == "did not report success within 2 h 0 min of admission"
