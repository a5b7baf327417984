"""When the engine decides: a stage's success window runs from its last device's report, and
the scheduler's next pass comes when a window ends or a scheduled start or deadline is due,
not up to one engine interval later (issue 22, ADR 0082 addendum)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from overlord.db import unit_of_work, utcnow
from overlord.rollouts import plan
from overlord.rollouts import service as rollouts_service
from overlord.rollouts.models import DeploymentRollout, RolloutState
from overlord.scheduler import Scheduler
from tests.overlord.conftest import Overlord
from tests.overlord.test_rollouts import _commit, _create, _fleet, _targeted, _tick

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _due(overlord: Overlord, *, later_s: float = 0) -> datetime | None:
    with unit_of_work(overlord.ctx.sessions) as session:
        return rollouts_service.tick(session, now=utcnow() + timedelta(seconds=later_s))


def test_the_success_window_runs_from_the_stages_last_report_not_from_the_next_pass(
    overlord: Overlord,
):
    fleet = _fleet(overlord, 2)
    _create(overlord, stages=[100], success_window_s=60)
    _tick(overlord)
    (canary,) = _targeted(overlord, fleet)
    committed_by = utcnow()
    _commit(overlord, canary, fleet[canary])
    # the first pass to see the canary settled comes 30 s after its report: 30 s are left
    due = _due(overlord, later_s=30)
    assert due is not None
    assert committed_by + timedelta(seconds=60) <= due <= utcnow() + timedelta(seconds=60)
    assert _targeted(overlord, fleet) == [canary]
    _tick(overlord, later_s=61)  # 61 s after the report, 31 s after that pass
    assert sorted(_targeted(overlord, fleet)) == sorted(fleet)


def test_the_next_due_moment_is_a_window_end_a_start_or_a_deadline():
    def rollout(state: RolloutState, **fields: object) -> DeploymentRollout:
        return DeploymentRollout(state=state, success_window_s=600, **fields)

    settled = rollout(RolloutState.RUNNING, stage_settled_at=T0 - timedelta(seconds=100))
    assert rollouts_service.next_due([settled], now=T0) == T0 + timedelta(seconds=500)
    pending = rollout(RolloutState.PENDING, start_at=T0 + timedelta(seconds=50))
    assert rollouts_service.next_due([settled, pending], now=T0) == T0 + timedelta(seconds=50)
    deadline = rollout(RolloutState.RUNNING, deadline=T0 + timedelta(seconds=20))
    assert rollouts_service.next_due([settled, deadline], now=T0) == T0 + timedelta(seconds=20)
    # a halted rollout's deadline changes nothing; a moment already past is not due again
    halted = rollout(RolloutState.HALTED, deadline=T0 + timedelta(seconds=5))
    paused = rollout(RolloutState.PAUSED, stage_settled_at=T0 - timedelta(seconds=10))
    passed = rollout(RolloutState.RUNNING, stage_settled_at=T0 - timedelta(seconds=700))
    unsettled = rollout(RolloutState.RUNNING)
    assert rollouts_service.next_due([halted, paused, passed, unsettled], now=T0) is None


def test_a_settled_stage_settled_at_its_last_finish():
    early, late = T0 - timedelta(seconds=40), T0 - timedelta(seconds=5)
    assert plan.settled_at([early, None, late], now=T0) == late
    assert plan.settled_at([], now=T0) == T0  # a stage with no device of its own
    assert plan.settled_at([T0 + timedelta(seconds=1)], now=T0) == T0  # a clock ahead of ours


def test_the_scheduler_wakes_when_a_decision_is_due_within_its_interval(overlord: Overlord):
    scheduler = Scheduler(overlord.ctx)
    interval = overlord.settings.engine_interval_s
    assert scheduler.pause_s(T0) == interval
    scheduler.next_due = T0 + timedelta(seconds=interval / 4)
    assert interval / 4 < scheduler.pause_s(T0) < interval / 4 + 0.1
    scheduler.next_due = T0 - timedelta(seconds=1)
    assert scheduler.pause_s(T0) == 0.0
    scheduler.next_due = T0 + timedelta(seconds=interval * 3)
    assert scheduler.pause_s(T0) == interval
    # a pass finds the next due moment: a scheduled start an hour ahead
    _fleet(overlord, 1)
    start_at = utcnow() + timedelta(hours=1)
    _create(overlord, start_at=start_at.isoformat())
    assert scheduler.run_once()
    assert scheduler.next_due is not None
    assert abs((scheduler.next_due - start_at).total_seconds()) < 1e-3
