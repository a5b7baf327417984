"""Pure rollout rules: stage sizes, maintenance windows, outcomes, the halt decision."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, time

from fleetcore.bootloader import build_date
from fleetcore.wire import IN_PROGRESS_STATES, EventKind, Health, UpdateState
from overlord.rollouts.models import DeviceOutcome, ReleaseKind

FINISHED = frozenset({DeviceOutcome.SUCCEEDED, DeviceOutcome.FAILED})
# What lets a stage settle: finished, or given up on after the stage timeout.
SETTLED = FINISHED | {DeviceOutcome.TIMED_OUT}
COUNTED_FAILED = frozenset({DeviceOutcome.FAILED, DeviceOutcome.TIMED_OUT})


def stage_count(stages: list[int]) -> int:
    """The canary plus one stage per percentage."""
    return 1 + len(stages)


def stage_label(stage: int, stages: list[int]) -> str:
    if stage == 0:
        return "canary"
    if stage > len(stages):
        return "done"
    return f"{stages[stage - 1]}%"


def stage_target(*, stage: int, total: int, canary: int, stages: list[int]) -> int:
    """How many devices in all must have been admitted once ``stage`` is fully rolled."""
    if stage == 0:
        return min(canary, total)
    return max(min(canary, total), math.ceil(total * stages[stage - 1] / 100))


def in_window(now: datetime, start: time | None, end: time | None) -> bool:
    """Is ``now`` (UTC) inside [start, end)? A window may wrap past midnight; none means always."""
    if start is None or end is None:
        return True
    current = now.time().replace(tzinfo=None)
    if start < end:
        return start <= current < end
    return current >= start or current < end


def admission_order(rollout_name: str, device_id: str) -> str:
    """A stable pseudo-random order, so a rollout picks the same canaries on every replica."""
    return hashlib.sha256(f"{rollout_name}/{device_id}".encode()).hexdigest()


@dataclass(frozen=True)
class StageTally:
    admitted: int
    failed: int

    @property
    def failure_ratio(self) -> float:
        return self.failed / self.admitted if self.admitted else 0.0


def bootloader_hold(*, minimum: int | None, reported: int | None) -> str | None:
    """Why a device whose bootloader build timestamp is ``reported`` is not offered an OS
    release that needs bootloader ``minimum``; None when it may be."""
    if minimum is None or (reported is not None and reported >= minimum):
        return None
    floor = f"bootloader {build_date(minimum)} or later"
    if reported is None:
        return f"needs {floor}; the device has not reported its bootloader version"
    return f"needs {floor}; the device runs {build_date(reported)}"


def settled_at(finished: list[datetime | None], *, now: datetime) -> datetime:
    """When a settled stage settled: its last device's finish (never later than ``now``), or
    ``now`` for a stage that admitted no device of its own."""
    times = [t for t in finished if t is not None]
    return min(max(times), now) if times else now


def timed_out(
    *, outcome: DeviceOutcome, admitted_at: datetime, now: datetime, timeout_s: int
) -> bool:
    """A device that has not finished within ``timeout_s`` of its admission."""
    return outcome not in SETTLED and (now - admitted_at).total_seconds() >= timeout_s


def timeout_reason(timeout_s: int) -> str:
    hours, rest = divmod(timeout_s, 3600)
    span = f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"
    return f"did not report success within {span} of admission"


def should_halt(tally: StageTally, threshold: float) -> bool:
    return tally.failed > 0 and tally.failure_ratio > threshold


_OS_FAILED = frozenset({EventKind.ROLLBACK, EventKind.INSTALL_FAILED, EventKind.VERSION_MARKED_BAD})
_OS_UPDATING = frozenset(
    {
        EventKind.UPDATE_AVAILABLE,
        EventKind.DOWNLOAD_PROGRESS,
        EventKind.INSTALL_STARTED,
        EventKind.INSTALL_PROGRESS,
        EventKind.TRIAL_STARTED,
    }
)
_ROLE_FAILED = frozenset({EventKind.ROLE_FAILED, EventKind.ROLE_ROLLBACK})
_BOOTLOADER_OUTCOMES = {
    EventKind.BOOTLOADER_STAGED: DeviceOutcome.UPDATING,
    EventKind.BOOTLOADER_UPDATED: DeviceOutcome.SUCCEEDED,
    EventKind.BOOTLOADER_FAILED: DeviceOutcome.FAILED,
}


def outcome_from_event(
    *,
    kind: ReleaseKind,
    role: str | None,
    version: str,
    event_kind: EventKind,
    event_version: str | None,
    event_role: object,
) -> DeviceOutcome | None:
    """What an event says about a device's part in a rollout, or None if it says nothing."""
    if event_version != version:
        return None
    if kind is ReleaseKind.OS:
        if event_kind is EventKind.UPDATE_COMMITTED:
            return DeviceOutcome.SUCCEEDED
        if event_kind in _OS_FAILED:
            return DeviceOutcome.FAILED
        if event_kind in _OS_UPDATING:
            return DeviceOutcome.UPDATING
        return None
    if kind is ReleaseKind.BOOTLOADER:
        return _BOOTLOADER_OUTCOMES.get(event_kind)
    if event_role is not None and event_role != role:
        return None
    if event_kind is EventKind.ROLE_APPLIED:
        return DeviceOutcome.SUCCEEDED
    if event_kind in _ROLE_FAILED:
        return DeviceOutcome.FAILED
    return None


def outcome_from_heartbeat(
    *,
    kind: ReleaseKind,
    role: str | None,
    version: str,
    image_version: str,
    update_state: UpdateState,
    roles: list[dict[str, object]],
) -> DeviceOutcome | None:
    """What a heartbeat says: running the target healthy is success; mid-update is updating."""
    if kind is ReleaseKind.OS:
        if image_version == version and update_state in {UpdateState.IDLE, UpdateState.COMMITTED}:
            return DeviceOutcome.SUCCEEDED
        if update_state in IN_PROGRESS_STATES:
            return DeviceOutcome.UPDATING
        return None
    if kind is ReleaseKind.BOOTLOADER:  # its events say how it went (the device verifies it)
        return None
    for status in roles:
        if status.get("name") == role and status.get("version") == version:
            if status.get("health") == Health.HEALTHY.value:
                return DeviceOutcome.SUCCEEDED
            return DeviceOutcome.UPDATING
    return None


def next_outcome(current: DeviceOutcome, observed: DeviceOutcome) -> DeviceOutcome:
    """Outcomes only move forward, except that a failure overrides an earlier success."""
    if current is DeviceOutcome.FAILED:
        return current
    if observed is DeviceOutcome.FAILED:
        return observed
    if current is DeviceOutcome.SUCCEEDED:
        return current
    if current is DeviceOutcome.TIMED_OUT:  # only a final report replaces a timeout
        return observed if observed is DeviceOutcome.SUCCEEDED else current
    if observed is DeviceOutcome.UPDATING and current is not DeviceOutcome.PENDING:
        return current
    return observed
