"""Rollouts: creation, operator controls, device outcomes and the stage engine."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from fleetcore import eeprom
from fleetcore.version import Version
from fleetcore.wire import Event, Heartbeat
from overlord.audit import service as audit
from overlord.audit.models import AuditAction, AuditObject, Channel
from overlord.audit.service import Actor
from overlord.configvars import service as configvars
from overlord.db import utcnow
from overlord.devices.models import Device
from overlord.devices.schemas import RolloutHold
from overlord.errors import Conflict, NotFound
from overlord.events import service as events_service
from overlord.events.models import AlertKind
from overlord.releases import service as releases_service
from overlord.rollouts import plan, schedule, targeting
from overlord.rollouts.models import (
    TERMINAL_STATES,
    DeploymentRollout,
    DeviceGroup,
    DeviceOutcome,
    DeviceUpdate,
    ReleaseKind,
    RolloutState,
)
from overlord.rollouts.schemas import (
    Exclusion,
    GroupPublic,
    GroupUpdate,
    RolloutCreate,
    RolloutPublic,
    Selector,
)
from signing.targets import TargetKind

ACTIVE_STATES = frozenset({RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.HALTED})


def create_rollout(
    session: Session, *, spec: RolloutCreate, repo_dir: Path, actor: Actor
) -> DeploymentRollout:
    """A rollout of a signed release; at most one unfinished rollout per release name."""
    kind = TargetKind(spec.kind.value)
    release = releases_service.find_release(
        repo_dir=repo_dir, kind=kind, name=spec.role or spec.kind.value, version=spec.version
    )
    if session.scalar(select(DeploymentRollout.id).where(DeploymentRollout.name == spec.name)):
        raise Conflict(f"a rollout named {spec.name} exists")
    clash = session.scalar(
        select(DeploymentRollout.name).where(
            DeploymentRollout.kind == spec.kind,
            DeploymentRollout.role_name.is_(None)
            if spec.role is None
            else DeploymentRollout.role_name == spec.role,
            DeploymentRollout.state.in_(ACTIVE_STATES | {RolloutState.PENDING}),
        )
    )
    if clash is not None:
        raise Conflict(
            f"rollout {clash} of the same release line is unfinished",
            hint="complete or abort it first",
        )
    targeting.check(session, spec.selector)
    rollout = DeploymentRollout(
        name=spec.name,
        kind=spec.kind,
        role_name=spec.role,
        version=str(spec.version),
        target=release.target,
        selector_groups=list(spec.selector.groups),
        selector_labels=dict(spec.selector.labels),
        selector_hardware=[h.value for h in spec.selector.hardware],
        selector_boards=[b.value for b in spec.selector.boards],
        selector_exclude=spec.selector.exclude.model_dump(mode="json"),
        min_bootloader_version=str(spec.min_bootloader) if spec.min_bootloader else None,
        canary_devices=spec.canary_devices,
        stages=list(spec.stages),
        success_window_s=spec.success_window_s,
        stage_timeout_s=spec.stage_timeout_s,
        failure_threshold=spec.failure_threshold,
        start_at=spec.start_at,
        deadline=spec.deadline,
        state=RolloutState.RUNNING
        if spec.start and spec.start_at is None
        else RolloutState.PENDING,
        current_stage=0,
    )
    session.add(rollout)
    session.flush()
    audit.record(
        session,
        actor,
        AuditAction.ROLLOUT_CREATE,
        object_type=AuditObject.ROLLOUT,
        object_id=rollout.id,
        after=spec.model_dump(mode="json") | {"state": rollout.state},
    )
    return rollout


def get_rollout(session: Session, *, rollout_id: int) -> DeploymentRollout:
    rollout = session.get(DeploymentRollout, rollout_id)
    if rollout is None:
        raise NotFound(f"no rollout {rollout_id}")
    return rollout


def list_rollouts(
    session: Session, *, state: RolloutState | None = None
) -> list[DeploymentRollout]:
    query = select(DeploymentRollout).order_by(DeploymentRollout.id.desc())
    if state is not None:
        query = query.where(DeploymentRollout.state == state)
    return list(session.scalars(query))


def pause(session: Session, *, rollout_id: int, actor: Actor) -> DeploymentRollout:
    rollout = get_rollout(session, rollout_id=rollout_id)
    before = _control_state(rollout)
    _require_state(rollout, {RolloutState.RUNNING}, "pause")
    rollout.state = RolloutState.PAUSED
    _record_control(session, actor, AuditAction.ROLLOUT_PAUSE, rollout, before)
    return rollout


def resume(session: Session, *, rollout_id: int, actor: Actor) -> DeploymentRollout:
    """Start a pending rollout (a scheduled one early), continue a paused one, or override a
    halt; never past the rollout's deadline."""
    rollout = get_rollout(session, rollout_id=rollout_id)
    before = _control_state(rollout)
    _require_state(
        rollout, {RolloutState.PENDING, RolloutState.PAUSED, RolloutState.HALTED}, "resume"
    )
    if _past_deadline(rollout, now=utcnow()):
        raise Conflict(
            f"cannot resume rollout {rollout.name}: its deadline passed",
            hint="abort it, and create a new rollout with a later deadline",
        )
    if rollout.state is RolloutState.HALTED:
        events_service.resolve_alerts(session, subject=f"rollout/{rollout.name}")
        # The operator accepts the failures so far: judge the stage afresh from here on.
        for row in _stage_rows(session, rollout):
            if row.outcome in plan.COUNTED_FAILED:
                row.stage = -1
    rollout.state = RolloutState.RUNNING
    rollout.halt_reason = None
    _record_control(session, actor, AuditAction.ROLLOUT_RESUME, rollout, before)
    return rollout


def abort(session: Session, *, rollout_id: int, actor: Actor) -> DeploymentRollout:
    rollout = get_rollout(session, rollout_id=rollout_id)
    before = _control_state(rollout)
    if rollout.state in TERMINAL_STATES:
        raise Conflict(f"rollout {rollout.name} is already {rollout.state.value}")
    _withdraw_unstarted(session, rollout)
    rollout.state = RolloutState.ABORTED
    _record_control(session, actor, AuditAction.ROLLOUT_ABORT, rollout, before)
    return rollout


def _control_state(rollout: DeploymentRollout) -> dict[str, object]:
    return {"name": rollout.name, "state": rollout.state, "halt_reason": rollout.halt_reason}


def _record_control(
    session: Session,
    actor: Actor,
    action: AuditAction,
    rollout: DeploymentRollout,
    before: dict[str, object],
) -> None:
    audit.record(
        session,
        actor,
        action,
        object_type=AuditObject.ROLLOUT,
        object_id=rollout.id,
        before=before,
        after=_control_state(rollout),
    )


def _require_state(rollout: DeploymentRollout, allowed: set[RolloutState], verb: str) -> None:
    if rollout.state not in allowed:
        raise Conflict(f"cannot {verb} rollout {rollout.name}: it is {rollout.state.value}")


def to_public(session: Session, rollout: DeploymentRollout) -> RolloutPublic:
    return public_rollouts(session, [rollout])[0]


def public_rollouts(session: Session, rollouts: Sequence[DeploymentRollout]) -> list[RolloutPublic]:
    """Rollouts as the API shows them, with their device counts: two queries for any number."""
    ids = [r.id for r in rollouts]
    totals: dict[int, Counter[DeviceOutcome]] = defaultdict(Counter)
    current: dict[int, Counter[DeviceOutcome]] = defaultdict(Counter)
    if ids:
        counted = (
            select(DeviceUpdate.rollout_id, DeviceUpdate.outcome, func.count())
            .where(DeviceUpdate.rollout_id.in_(ids))
            .group_by(DeviceUpdate.rollout_id, DeviceUpdate.outcome)
        )
        for rollout_id, outcome, count in session.execute(counted):
            totals[rollout_id][outcome] = count
        in_stage = counted.join(
            DeploymentRollout, DeploymentRollout.id == DeviceUpdate.rollout_id
        ).where(DeviceUpdate.stage == DeploymentRollout.current_stage)
        for rollout_id, outcome, count in session.execute(in_stage):
            current[rollout_id][outcome] = count
    return [_public(r, totals[r.id], current[r.id]) for r in rollouts]


def _public(
    rollout: DeploymentRollout,
    counts: Counter[DeviceOutcome],
    in_stage: Counter[DeviceOutcome],
) -> RolloutPublic:
    tally = plan.StageTally(
        admitted=sum(in_stage.values()),
        failed=sum(n for outcome, n in in_stage.items() if outcome in plan.COUNTED_FAILED),
    )
    return RolloutPublic(
        id=rollout.id,
        name=rollout.name,
        kind=rollout.kind,
        role=rollout.role_name,
        version=rollout.version,
        target=rollout.target,
        selector=selector(rollout),
        min_bootloader=rollout.min_bootloader_version,
        canary_devices=rollout.canary_devices,
        stages=rollout.stages,
        success_window_s=rollout.success_window_s,
        stage_timeout_s=rollout.stage_timeout_s,
        failure_threshold=rollout.failure_threshold,
        start_at=rollout.start_at,
        deadline=rollout.deadline,
        state=rollout.state,
        current_stage=rollout.current_stage,
        stage_label=plan.stage_label(rollout.current_stage, rollout.stages),
        halt_reason=rollout.halt_reason,
        actions=actions(rollout, now=utcnow()),
        devices={o: counts.get(o, 0) for o in DeviceOutcome},
        failure_ratio=tally.failure_ratio,
        created_at=rollout.created_at,
        updated_at=rollout.updated_at,
    )


_ACTIONS: dict[RolloutState, tuple[str, ...]] = {
    RolloutState.RUNNING: ("pause", "abort"),
    RolloutState.PAUSED: ("resume", "abort"),
    RolloutState.PENDING: ("resume", "abort"),
    RolloutState.HALTED: ("resume", "abort"),
}


def actions(rollout: DeploymentRollout, *, now: datetime) -> list[str]:
    """The verbs :func:`pause`, :func:`resume` and :func:`abort` accept for this rollout now."""
    verbs = _ACTIONS.get(rollout.state, ())
    if _past_deadline(rollout, now=now):
        verbs = tuple(v for v in verbs if v != "resume")
    return list(verbs)


def _past_deadline(rollout: DeploymentRollout, *, now: datetime) -> bool:
    """The deadline passed, by this clock or by the scheduler's that halted the rollout."""
    return schedule.expired(rollout.deadline, now=now) or schedule.halted_by_deadline(
        rollout.halt_reason
    )


def device_updates(session: Session, *, rollout_id: int) -> list[DeviceUpdate]:
    get_rollout(session, rollout_id=rollout_id)
    return list(
        session.scalars(
            select(DeviceUpdate)
            .where(DeviceUpdate.rollout_id == rollout_id)
            .order_by(DeviceUpdate.admitted_at, DeviceUpdate.id)
        )
    )


# Observing devices ------------------------------------------------------------------------


def _open_rows(session: Session, device_id: str) -> list[tuple[DeviceUpdate, DeploymentRollout]]:
    return [
        (row, rollout)
        for row, rollout in session.execute(
            select(DeviceUpdate, DeploymentRollout)
            .join(DeploymentRollout, DeploymentRollout.id == DeviceUpdate.rollout_id)
            .where(
                DeviceUpdate.device_id == device_id,
                DeploymentRollout.state.not_in(TERMINAL_STATES),
            )
        )
    ]


def _apply(
    row: DeviceUpdate, observed: DeviceOutcome | None, reason: str | None, now: datetime
) -> None:
    if observed is None:
        return
    outcome = plan.next_outcome(row.outcome, observed)
    if outcome is row.outcome:
        return
    row.outcome = outcome
    if outcome in plan.FINISHED:
        row.finished_at = now
        if outcome is DeviceOutcome.FAILED:
            row.reason = reason or "the device reported a failure without a reason"
        else:
            row.reason = None  # a late success clears a timeout


def observe_heartbeat(session: Session, *, device: Device, heartbeat: Heartbeat) -> None:
    if not device.open_update:
        return
    now = utcnow()
    rows = _open_rows(session, device.id)
    for row, rollout in rows:
        _apply(
            row,
            plan.outcome_from_heartbeat(
                kind=rollout.kind,
                role=rollout.role_name,
                version=rollout.version,
                image_version=str(heartbeat.image_version),
                update_state=heartbeat.update_state,
                roles=[r.model_dump(mode="json") for r in heartbeat.roles],
            ),
            None,
            now,
        )
    device.open_update = any(row.outcome not in plan.FINISHED for row, _ in rows)


def observe_events(session: Session, *, device: Device, events: list[Event]) -> None:
    if not events:
        return
    now = utcnow()
    for row, rollout in _open_rows(session, device.id):
        for event in sorted(events, key=lambda e: e.seq):
            _apply(
                row,
                plan.outcome_from_event(
                    kind=rollout.kind,
                    role=rollout.role_name,
                    version=rollout.version,
                    event_kind=event.kind,
                    event_version=str(event.version) if event.version is not None else None,
                    event_role=event.data.get("role"),
                ),
                event.reason or event.message or None,
                now,
            )


def holds(session: Session, *, device: Device) -> list[RolloutHold]:
    """The unfinished OS rollouts that select the device but do not offer it their release
    because its bootloader is below their minimum, each with the reason."""
    found = []
    for rollout in session.scalars(
        select(DeploymentRollout)
        .where(
            DeploymentRollout.kind == ReleaseKind.OS,
            DeploymentRollout.min_bootloader_version.is_not(None),
            DeploymentRollout.state.not_in(TERMINAL_STATES),
        )
        .order_by(DeploymentRollout.id)
    ):
        reason = plan.bootloader_hold(
            minimum=_bootloader_minimum(rollout), reported=device.bootloader_version
        )
        if reason is None or not _needs_update(rollout, device):
            continue
        admitted = session.scalar(
            select(DeviceUpdate.id).where(
                DeviceUpdate.rollout_id == rollout.id, DeviceUpdate.device_id == device.id
            )
        )
        selected = session.scalar(
            targeting.matching(selector(rollout))
            .where(Device.id == device.id)
            .with_only_columns(Device.id)
        )
        if admitted is None and selected is not None:
            found.append(
                RolloutHold(
                    rollout=rollout.name,
                    version=rollout.version,
                    min_bootloader=str(rollout.min_bootloader_version),
                    reason=reason,
                )
            )
    return found


# The engine ---------------------------------------------------------------------------------


def _stage_rows(session: Session, rollout: DeploymentRollout) -> list[DeviceUpdate]:
    return list(
        session.scalars(
            select(DeviceUpdate).where(
                DeviceUpdate.rollout_id == rollout.id,
                DeviceUpdate.stage == rollout.current_stage,
            )
        )
    )


def stage_tally(session: Session, rollout: DeploymentRollout) -> plan.StageTally:
    return _tally(_stage_rows(session, rollout))


def _tally(rows: list[DeviceUpdate]) -> plan.StageTally:
    return plan.StageTally(
        admitted=len(rows), failed=sum(r.outcome in plan.COUNTED_FAILED for r in rows)
    )


def selector(rollout: DeploymentRollout) -> Selector:
    return Selector(
        groups=rollout.selector_groups,
        labels=rollout.selector_labels,
        hardware=rollout.selector_hardware,  # type: ignore[arg-type]
        boards=rollout.selector_boards,  # type: ignore[arg-type]
        exclude=Exclusion.model_validate(rollout.selector_exclude),
    )


def _selected(session: Session, rollout: DeploymentRollout) -> list[Device]:
    return list(session.scalars(targeting.matching(selector(rollout))))


def _needs_update(rollout: DeploymentRollout, device: Device) -> bool:
    target = Version(rollout.version)
    if rollout.kind is ReleaseKind.OS:
        return Version(device.image_version) < target
    if rollout.kind is ReleaseKind.BOOTLOADER:  # bootloader/<family>/<version>/pieeprom.bin
        return device.hardware == rollout.target.split("/")[1]
    for status in device.roles:
        if status.get("name") == rollout.role_name and status.get("version") == rollout.version:
            return False
    return True


def _bootloader_minimum(rollout: DeploymentRollout) -> int | None:
    if rollout.min_bootloader_version is None:
        return None
    return eeprom.release_timestamp(Version(rollout.min_bootloader_version))


def _desire(device: Device, rollout: DeploymentRollout) -> str | None:
    """Point the device at the rollout's release; returns what it wanted before."""
    if rollout.kind is ReleaseKind.OS:
        previous = device.desired_os_version
        device.desired_os_version = rollout.version
        return previous
    if rollout.kind is ReleaseKind.BOOTLOADER:
        previous = device.desired_bootloader_version
        device.desired_bootloader_version = rollout.version
        return previous
    assert rollout.role_name is not None
    roles = dict(device.desired_roles)
    previous_role = roles.get(rollout.role_name)
    roles[rollout.role_name] = rollout.version
    device.desired_roles = roles
    return previous_role


def _undesire(device: Device, rollout: DeploymentRollout, previous: str | None) -> None:
    if rollout.kind is ReleaseKind.OS:
        if device.desired_os_version == rollout.version:
            device.desired_os_version = previous
        return
    if rollout.kind is ReleaseKind.BOOTLOADER:
        if device.desired_bootloader_version == rollout.version:
            device.desired_bootloader_version = previous
        return
    assert rollout.role_name is not None
    roles = dict(device.desired_roles)
    if roles.get(rollout.role_name) == rollout.version:
        if previous is None:
            roles.pop(rollout.role_name)
        else:
            roles[rollout.role_name] = previous
        device.desired_roles = roles


def _withdraw_unstarted(session: Session, rollout: DeploymentRollout) -> None:
    """Devices admitted but not yet started, and failed ones, go back to what they wanted.

    Their rows are dropped, so they neither count as failures nor block re-admission when
    an operator resumes a halted rollout.
    """
    for row in session.scalars(
        select(DeviceUpdate).where(
            DeviceUpdate.rollout_id == rollout.id, DeviceUpdate.outcome == DeviceOutcome.PENDING
        )
    ):
        device = session.get(Device, row.device_id)
        if device is not None:
            _undesire(device, rollout, row.previous_version)
            device.open_update = False
        session.delete(row)
    # Devices that failed or timed out stop being pointed at the release, so they do not
    # retry it.
    for row in session.scalars(
        select(DeviceUpdate).where(
            DeviceUpdate.rollout_id == rollout.id,
            DeviceUpdate.outcome.in_(plan.COUNTED_FAILED),
        )
    ):
        device = session.get(Device, row.device_id)
        if device is not None:
            _undesire(device, rollout, row.previous_version)
    _clear_prestage(session, rollout)
    session.flush()


def _hint_prestage(candidates: list[Device], rollout: DeploymentRollout) -> None:
    """Point every targeted, not yet admitted device at the release to stage (ADR 0082).

    Staging writes only the inactive slot and never reboots, so it ignores maintenance
    windows; a newer rollout's release replaces an older hint.
    """
    target = Version(rollout.version)
    for device in candidates:
        staged = device.prestage_os_version
        if staged is None or Version(staged) < target:
            device.prestage_os_version = rollout.version


def _clear_prestage(session: Session, rollout: DeploymentRollout) -> None:
    """A stopped rollout withdraws its hint; whatever a device staged is simply overwritten
    by its next install and never tried."""
    if rollout.kind is not ReleaseKind.OS:
        return
    for device in session.scalars(
        select(Device).where(Device.prestage_os_version == rollout.version)
    ):
        device.prestage_os_version = None


def hints(rollout: DeploymentRollout) -> bool:
    """Does the rollout tell devices to pre-stage its release (ADR 0082)? A running OS rollout
    does, and so does a scheduled one before its start: its canaries are staged too, so every
    stage, the first included, costs only reboots. A pending rollout without a start time
    waits for an operator's decision and hints nothing."""
    if rollout.kind is not ReleaseKind.OS:
        return False
    return rollout.state is RolloutState.RUNNING or (
        rollout.state is RolloutState.PENDING and rollout.start_at is not None
    )


def staged_devices(session: Session, rollout: DeploymentRollout) -> int | None:
    """How many devices the rollout hints have staged its release (ADR 0082); None for a
    rollout that hints nothing."""
    if not hints(rollout):
        return None
    hinted = and_(
        Device.prestage_os_version == rollout.version, Device.staged_version == rollout.version
    )
    return session.scalar(select(func.count()).select_from(Device).where(hinted)) or 0


def _candidates(session: Session, rollout: DeploymentRollout, admitted: set[str]) -> list[Device]:
    """Devices the rollout selects, has not admitted, and may offer its release to."""
    minimum = _bootloader_minimum(rollout)
    return [
        d
        for d in _selected(session, rollout)
        if d.id not in admitted
        and _needs_update(rollout, d)
        and plan.bootloader_hold(minimum=minimum, reported=d.bootloader_version) is None
    ]


def _admit(session: Session, rollout: DeploymentRollout, now: datetime) -> tuple[int, int]:
    """Admit devices up to the current stage's size; returns (admitted, wanted) in all."""
    admitted = set(
        session.scalars(select(DeviceUpdate.device_id).where(DeviceUpdate.rollout_id == rollout.id))
    )
    candidates = _candidates(session, rollout, admitted)
    wanted = plan.stage_target(
        stage=rollout.current_stage,
        total=len(admitted) + len(candidates),
        canary=rollout.canary_devices,
        stages=rollout.stages,
    )
    if hints(rollout):
        _hint_prestage(candidates, rollout)
    if len(admitted) >= wanted:
        return len(admitted), wanted
    windows = {g.name: (g.window_start, g.window_end) for g in session.scalars(select(DeviceGroup))}
    # Devices that already staged this release go first: a stage then waits on no download.
    staged = rollout.version if rollout.kind is ReleaseKind.OS else None
    candidates.sort(
        key=lambda d: (
            staged is None or d.staged_version != staged,
            plan.admission_order(rollout.name, d.id),
        )
    )
    count = len(admitted)
    for device in candidates[: wanted - count]:
        start, end = windows.get(device.group_name or "", (None, None))
        if not plan.in_window(now, start, end):
            continue
        session.add(
            DeviceUpdate(
                rollout_id=rollout.id,
                device_id=device.id,
                stage=rollout.current_stage,
                previous_version=_desire(device, rollout),
                admitted_at=now,
            )
        )
        device.open_update = True
        count += 1
    session.flush()
    return count, wanted


def _halt(session: Session, rollout: DeploymentRollout, tally: plan.StageTally) -> None:
    reasons = Counter(
        r.reason for r in _stage_rows(session, rollout) if r.outcome in plan.COUNTED_FAILED
    )
    top = "; ".join(f"{reason} (x{n})" for reason, n in reasons.most_common(3))
    stage = plan.stage_label(rollout.current_stage, rollout.stages)
    rollout.halt_reason = (
        f"{stage} stage: {tally.failed} of {tally.admitted} devices failed "
        f"({tally.failure_ratio:.0%} > {rollout.failure_threshold:.0%}): {top}"
    )
    rollout.state = RolloutState.HALTED
    _withdraw_unstarted(session, rollout)
    if events_service.rule_enabled(session, kind=AlertKind.ROLLOUT_HALTED):
        events_service.raise_alert(
            session,
            kind=AlertKind.ROLLOUT_HALTED,
            subject=f"rollout/{rollout.name}",
            message=f"rollout {rollout.name} halted: {rollout.halt_reason}",
        )


def _time_out(session: Session, rollout: DeploymentRollout, now: datetime) -> None:
    """Give up on devices of the current stage that have not finished within its timeout."""
    for row in _stage_rows(session, rollout):
        if plan.timed_out(
            outcome=row.outcome,
            admitted_at=row.admitted_at,
            now=now,
            timeout_s=rollout.stage_timeout_s,
        ):
            row.outcome = DeviceOutcome.TIMED_OUT
            row.reason = plan.timeout_reason(rollout.stage_timeout_s)
            row.finished_at = now
    session.flush()


def step(session: Session, *, rollout: DeploymentRollout, now: datetime) -> None:
    """Advance one running rollout as far as its devices allow."""
    if rollout.state is not RolloutState.RUNNING:
        return
    admitted, wanted = _admit(session, rollout, now)
    _time_out(session, rollout, now)
    rows = _stage_rows(session, rollout)
    tally = _tally(rows)
    if plan.should_halt(tally, rollout.failure_threshold):
        _halt(session, rollout, tally)
        return
    settled = admitted >= wanted and all(r.outcome in plan.SETTLED for r in rows)
    if not settled:
        rollout.stage_settled_at = None
        return
    if rollout.stage_settled_at is None:
        # The success window runs from the stage's last report, not from this pass.
        rollout.stage_settled_at = plan.settled_at([r.finished_at for r in rows], now=now)
    if (now - rollout.stage_settled_at).total_seconds() < rollout.success_window_s:
        return
    rollout.stage_settled_at = None
    if rollout.current_stage + 1 >= plan.stage_count(rollout.stages):
        rollout.state = RolloutState.COMPLETED
        _clear_prestage(session, rollout)
        return
    rollout.current_stage += 1
    _admit(session, rollout, now)


# Schedule changes are the scheduler's, on behalf of whoever scheduled the rollout.
SCHEDULER = Actor(None, "scheduler", None, "overlord", Channel.SCHEDULER)


def _keep_schedule(session: Session, rollout: DeploymentRollout, now: datetime) -> None:
    """Halt an unfinished rollout at its deadline; start a scheduled one when it is due."""
    before = _control_state(rollout)
    if rollout.state is not RolloutState.HALTED and schedule.expired(rollout.deadline, now=now):
        assert rollout.deadline is not None
        counts = Counter(
            session.scalars(
                select(DeviceUpdate.outcome).where(DeviceUpdate.rollout_id == rollout.id)
            )
        )
        rollout.halt_reason = schedule.deadline_reason(
            rollout.deadline,
            succeeded=counts[DeviceOutcome.SUCCEEDED],
            admitted=sum(counts.values()),
        )
        rollout.state = RolloutState.HALTED
        rollout.stage_settled_at = None
        _withdraw_unstarted(session, rollout)
        _record_control(session, SCHEDULER, AuditAction.ROLLOUT_DEADLINE, rollout, before)
    elif rollout.state is RolloutState.PENDING and schedule.due(rollout.start_at, now=now):
        rollout.state = RolloutState.RUNNING
        _record_control(session, SCHEDULER, AuditAction.ROLLOUT_START, rollout, before)


def tick(session: Session, *, now: datetime | None = None) -> datetime | None:
    """One engine pass (run under the engine lease): deadlines and scheduled starts first,
    then every running rollout. Returns when the next decision is due (:func:`next_due`)."""
    now = now or utcnow()
    unfinished = select(DeploymentRollout).where(DeploymentRollout.state.not_in(TERMINAL_STATES))
    scheduled = unfinished.where(
        (DeploymentRollout.start_at.is_not(None)) | (DeploymentRollout.deadline.is_not(None)),
    )
    for rollout in session.scalars(scheduled):
        _keep_schedule(session, rollout, now)
        if rollout.state is RolloutState.PENDING and hints(rollout):
            _hint_prestage(_candidates(session, rollout, set()), rollout)
    session.flush()
    for rollout in list_rollouts(session, state=RolloutState.RUNNING):
        step(session, rollout=rollout, now=now)
    return next_due(session.scalars(unfinished), now=now)


def next_due(rollouts: Iterable[DeploymentRollout], *, now: datetime) -> datetime | None:
    """The earliest moment after ``now`` at which a rollout's state changes by the clock
    alone: a success window ends, a scheduled start or a deadline arrives. The scheduler
    runs its next pass then, if that is sooner than its interval, so a stage is admitted
    when its window ends rather than up to one interval later."""
    moments = []
    for rollout in rollouts:
        if rollout.state is RolloutState.RUNNING and rollout.stage_settled_at is not None:
            moments.append(rollout.stage_settled_at + timedelta(seconds=rollout.success_window_s))
        if rollout.state is RolloutState.PENDING and rollout.start_at is not None:
            moments.append(rollout.start_at)
        if rollout.state is not RolloutState.HALTED and rollout.deadline is not None:
            moments.append(rollout.deadline)
    return min((m for m in moments if m > now), default=None)


# Device groups -------------------------------------------------------------------------------


def put_group(session: Session, *, name: str, update: GroupUpdate, actor: Actor) -> DeviceGroup:
    group = session.get(DeviceGroup, name)
    before = None if group is None else _group_settings(group)
    if group is None:
        group = DeviceGroup(name=name)
        session.add(group)
    group.description = update.description
    group.window_start = update.window_start
    group.window_end = update.window_end
    group.poll_interval_s = update.poll_interval_s
    session.flush()
    audit.record(
        session,
        actor,
        AuditAction.GROUP_CREATE if before is None else AuditAction.GROUP_UPDATE,
        object_type=AuditObject.GROUP,
        object_id=name,
        before=before,
        after=_group_settings(group),
    )
    return group


def _group_settings(group: DeviceGroup) -> dict[str, object]:
    return {
        "description": group.description,
        "window_start": group.window_start,
        "window_end": group.window_end,
        "poll_interval_s": group.poll_interval_s,
    }


def list_groups(session: Session) -> list[GroupPublic]:
    counts = {
        name: count
        for name, count in session.execute(
            select(Device.group_name, func.count()).group_by(Device.group_name)
        )
    }
    return [
        GroupPublic(
            name=g.name,
            description=g.description,
            window_start=g.window_start,
            window_end=g.window_end,
            poll_interval_s=g.poll_interval_s,
            devices=counts.get(g.name, 0),
        )
        for g in session.scalars(select(DeviceGroup).order_by(DeviceGroup.name))
    ]


def delete_group(session: Session, *, name: str, actor: Actor) -> None:
    group = session.get(DeviceGroup, name)
    if group is None:
        raise NotFound(f"no device group {name}")
    if session.scalar(select(func.count()).select_from(Device).where(Device.group_name == name)):
        raise Conflict(f"device group {name} still has devices")
    before = _group_settings(group)
    # The group's configuration goes with it (no device is in the group to lose it).
    before["config"] = configvars.delete_group_variables(session, name)
    session.delete(group)
    audit.record(
        session,
        actor,
        AuditAction.GROUP_DELETE,
        object_type=AuditObject.GROUP,
        object_id=name,
        before=before,
    )
