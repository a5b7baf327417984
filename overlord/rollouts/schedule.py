"""Pure rules for a rollout's schedule: a start time and a deadline, both timezone-aware.

A scheduled rollout is ``pending`` until ``start_at``; the engine then starts it. At its
``deadline`` a rollout that has not finished halts with a "deadline passed" reason: it admits
no more devices (those admitted but not started are withdrawn) and devices already updating
finish and are still counted. A resume cannot override a passed deadline (ADR 0069).
"""

from __future__ import annotations

from datetime import datetime, timedelta

# A start a little in the past is "now": clocks and the time a request takes differ.
START_TOLERANCE = timedelta(seconds=60)
# A schedule further ahead than this is more likely a typo than a plan.
HORIZON = timedelta(days=366)
DEADLINE_PREFIX = "deadline passed"


def check_start(start_at: datetime, *, now: datetime) -> None:
    """Raise ValueError, naming the field, for a start in the past or beyond the horizon."""
    if start_at < now - START_TOLERANCE:
        raise ValueError(f"start_at {start_at.isoformat()} is in the past (now {_at(now)})")
    if start_at > now + HORIZON:
        raise ValueError(f"start_at is more than {HORIZON.days} days ahead")


def check_deadline(deadline: datetime, *, start_at: datetime | None, now: datetime) -> None:
    """Raise ValueError, naming the field, for a deadline not after the start (or now)."""
    begins = start_at if start_at is not None else now
    if deadline <= begins:
        what = "start_at" if start_at is not None else f"now ({_at(now)})"
        raise ValueError(f"deadline {deadline.isoformat()} is not after {what}")
    if deadline > now + 2 * HORIZON:
        raise ValueError(f"deadline is more than {2 * HORIZON.days} days ahead")


def due(start_at: datetime | None, *, now: datetime) -> bool:
    """Is a scheduled start due? A pending rollout without a start time waits for resume."""
    return start_at is not None and start_at <= now


def expired(deadline: datetime | None, *, now: datetime) -> bool:
    return deadline is not None and now >= deadline


def halted_by_deadline(halt_reason: str | None) -> bool:
    return (halt_reason or "").startswith(DEADLINE_PREFIX)


def deadline_reason(deadline: datetime, *, succeeded: int, admitted: int) -> str:
    return (
        f"{DEADLINE_PREFIX} at {_at(deadline)}: {succeeded} of {admitted} admitted devices "
        "succeeded; no more devices are admitted, devices already updating finish"
    )


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
