"""The role manager's decisions, free of I/O: ``decide(state, observation) -> Decision``.

The runner (:mod:`updater.roles.manager`) observes the device (what ``current`` names, the
outcome of a staging, of a start or of a health check, an operator's or the Overlord's
request) and hands each observation to :func:`decide`, which returns the new state, the
effects to carry out in order (:data:`Action`), and either the next thing to find out
(:data:`Probe`, answered by another observation) or the flow's :class:`RoleOutcome`. Nothing here
imports Docker, compose, a subprocess or the file system (an import-linter contract holds it),
so every rule is tested without an engine (``tests/roles/test_decide*.py``).

The rules (ADR 0041):

- a desired version passing its health gate is ``APPLIED``, confirmed (nothing lower starts
  again) and ends a safe mode its own role's failures tripped;
- one failing it is marked bad and replaced by ``previous`` (``ROLLED_BACK``); with no startable
  ``previous`` it is stopped and counted as a failure of the role; so is a failed rollback or
  restart; ``safe_mode_after`` failures in a row trip safe mode (:class:`SafeModeCause`
  ``CRASH_LOOP``): only that role is stopped and the safe-mode stack started;
- the running version whose ``.env`` renders differently with the device's configuration now
  (the Overlord's variables, ADR 0068) is restarted (``RECONFIGURE``); its failure counts like a
  failed restart, and a success ends a safe mode the role tripped, so a configuration that
  broke a role is fixed by the next one;
- an operator's or the Overlord's safe mode stops every role and skips every apply; the
  Overlord ends only the one it asked for;
- anti-rollback holds for every start: never a bad version, one below the highest version that
  passed its gate here, or below the highest signed floor (:func:`refusal`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from fleetcore.rolebundle.spec import ROLE_NAME_RE, SAFE_MODE_ROLE
from fleetcore.version import Version
from fleetcore.wire import DesiredRole, EventKind
from signing.errors import DowngradeRefused
from signing.rollback import check_upgrade, raise_floor
from updater.roles.errors import TargetRefused
from updater.roles.record import ManagerState, RoleRecord, SafeModeCause, SafeModeRecord

MAX_ERROR_CHARS = 500


class RoleOutcome(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class RoleEvent:
    """A role event for the updater's event queue (``fleetcore.wire.Event``)."""

    kind: EventKind
    role: str
    version: Version | None
    message: str
    reason: str | None = None

    def data(self) -> dict[str, str]:
        return {"role": self.role}


class Purpose(StrEnum):
    """Why a version is started, which decides what its result leads to."""

    ACTIVATE = "activate"  # ``current`` was just swapped to it (or a swap was cut)
    ROLL_BACK = "roll-back"  # ``current`` was swapped back to ``previous``
    RESTART = "restart"  # it is ``current`` but was found not running healthy
    RECONFIGURE = "reconfigure"  # it is ``current`` and its rendered ``.env`` changed


# ---------------------------------------------------------------- observations


@dataclass(frozen=True)
class Assigned:
    """The desired state lists ``desired``; ``current`` is what the role's link names.

    ``reconfigure`` says what changed (``CAMERA_FPS changed``) when ``current`` is the desired
    version and its ``.env``, rendered with the device's configuration now, differs from the
    one it runs with; None otherwise.
    """

    desired: DesiredRole
    current: Version | None
    reconfigure: str | None = None


@dataclass(frozen=True)
class AppliedByHand:
    """``fleet-updater roles apply``: the operator may retry a version marked bad, and names
    the bundle itself (its name was validated with the bundle)."""

    desired: DesiredRole
    current: Version | None


@dataclass(frozen=True)
class Fetched:
    """The target's signed metadata declared ``floor`` for the role."""

    role: str
    version: Version
    floor: Version | None


@dataclass(frozen=True)
class Staged:
    """``version`` is staged, its images present: ready to swap to."""

    role: str
    version: Version


@dataclass(frozen=True)
class StageFailed:
    """Fetching or staging failed; ``rejected`` when the bundle itself is at fault."""

    role: str
    version: Version
    error: str
    rejected: bool


@dataclass(frozen=True)
class Started:
    """A start (``Start`` probe) ended: ``error`` is None when the health gate passed.

    ``previous`` is what the role's ``previous`` link names (for a failed activation).
    """

    role: str
    version: Version
    purpose: Purpose
    error: str | None
    previous: Version | None = None
    cause: str | None = None


@dataclass(frozen=True)
class Checked:
    """The running version's containers, judged without restarting them."""

    role: str
    version: Version
    healthy: bool


@dataclass(frozen=True)
class KeepRunning:
    """``role`` should run what ``current`` names (after safe mode, or a resume)."""

    role: str
    current: Version | None


@dataclass(frozen=True)
class Resumed:
    """At agent start: ``role``'s link names ``current``; the state may hold a pending swap."""

    role: str
    current: Version | None


@dataclass(frozen=True)
class ResumeDone:
    """Every installed role was resumed."""


@dataclass(frozen=True)
class Unassigned:
    """``role`` is on disk but no longer desired."""

    role: str


@dataclass(frozen=True)
class OperatorEntered:
    reason: str


@dataclass(frozen=True)
class OperatorLeft:
    pass


@dataclass(frozen=True)
class OverlordWants:
    """``DesiredState.safe_mode``, on every poll."""

    safe_mode: bool


@dataclass(frozen=True)
class SafeModeStackFailed:
    error: str


Observation = (
    Assigned
    | AppliedByHand
    | Fetched
    | Staged
    | StageFailed
    | Started
    | Checked
    | KeepRunning
    | Resumed
    | ResumeDone
    | Unassigned
    | OperatorEntered
    | OperatorLeft
    | OverlordWants
    | SafeModeStackFailed
)

# ---------------------------------------------------------------- actions and probes


@dataclass(frozen=True)
class Emit:
    event: RoleEvent


@dataclass(frozen=True)
class Save:
    """Persist the state as it is now (before the effects that follow)."""


@dataclass(frozen=True)
class Checkpoint:
    """A named point where tests cut the power."""

    name: str


@dataclass(frozen=True)
class Swap:
    """``current`` -> ``version``, ``previous`` -> the old ``current``."""

    role: str
    version: Version


@dataclass(frozen=True)
class PointCurrent:
    """``current`` -> ``version`` (the swap back to ``previous``)."""

    role: str
    version: Version


@dataclass(frozen=True)
class Stop:
    role: str
    version: Version


@dataclass(frozen=True)
class StopCurrent:
    """Stop whatever ``current`` names for ``role``."""

    role: str


@dataclass(frozen=True)
class StopAllRoles:
    pass


@dataclass(frozen=True)
class Prune:
    """Drop the versions neither link names, and the images only they carried."""

    role: str


@dataclass(frozen=True)
class Delete:
    """Drop every version of ``role`` and its links; its ``state/`` data stays."""

    role: str


@dataclass(frozen=True)
class StartSafeModeStack:
    pass


@dataclass(frozen=True)
class StopSafeModeStack:
    pass


@dataclass(frozen=True)
class KeepAllRunning:
    """Observe :class:`KeepRunning` for every installed role."""


Action = (
    Emit
    | Save
    | Checkpoint
    | Swap
    | PointCurrent
    | Stop
    | StopCurrent
    | StopAllRoles
    | Prune
    | Delete
    | StartSafeModeStack
    | StopSafeModeStack
    | KeepAllRunning
)


@dataclass(frozen=True)
class Install:
    """Stage ``desired`` (from disk, or fetched); answered by ``Staged`` or ``StageFailed``."""

    desired: DesiredRole


@dataclass(frozen=True)
class Start:
    """Start ``version`` (``current`` names it) and wait for its gate; answered by ``Started``.

    ``cause`` travels to the answer: why a rollback was needed, for its event.
    """

    role: str
    version: Version
    purpose: Purpose
    cause: str | None = None


@dataclass(frozen=True)
class Refuse:
    """Anti-rollback refuses ``version``: start nothing, answer ``Started`` with ``error``
    (and the links as they are), so the role's rules for a failed start apply."""

    role: str
    version: Version
    purpose: Purpose
    error: str
    cause: str | None = None


@dataclass(frozen=True)
class Check:
    """Judge the running ``version`` of ``role``; answered by ``Checked``."""

    role: str
    version: Version


Probe = Install | Start | Refuse | Check


@dataclass(frozen=True)
class Decision:
    """``result`` is a probe to answer, or the outcome: a role flow's; for anything else (a
    safe-mode request, a removal, bookkeeping) ``APPLIED`` when safe mode or a role changed,
    ``UNCHANGED`` if only the record did or nothing."""

    state: ManagerState
    actions: tuple[Action, ...]
    result: RoleOutcome | Probe


@dataclass(frozen=True)
class Rules:
    """What a decision depends on besides the state: the clock and the configuration."""

    now: datetime
    safe_mode_after: int = 3


# ---------------------------------------------------------------- pure rules


def refusal(record: RoleRecord | None, version: Version) -> TargetRefused | None:
    """Why ``version`` must not start, by the rule a fresh install follows; None if it may."""
    if record is None:
        return None
    if version in record.bad_versions:
        return TargetRefused(f"refusing version {version}: it failed its health gate here")
    if record.confirmed is not None and version < record.confirmed:
        return TargetRefused(
            f"refusing version {version}: it is lower than {record.confirmed}, which "
            "already passed its health gate here",
            hint="a bad release is fixed by publishing a newer version",
        )
    try:
        check_upgrade(version, installed=version, floor=record.floor)
    except DowngradeRefused as err:
        return TargetRefused(str(err), hint=err.hint)
    return None


def valid_name(name: str) -> bool:
    return name != SAFE_MODE_ROLE and re.fullmatch(ROLE_NAME_RE, name) is not None


def decide(state: ManagerState, observation: Observation, rules: Rules) -> Decision:
    """The new state, the effects to carry out, and the next probe or the outcome.

    ``state`` is not changed: the decision works on a copy.
    """
    step = _Step(state.model_copy(deep=True), rules)
    result = step.handle(observation)
    return Decision(state=step.state, actions=tuple(step.actions), result=result)


@dataclass
class _Step:
    """One decision under way: the state copy it changes and the effects it collects."""

    state: ManagerState
    rules: Rules
    actions: list[Action] = field(default_factory=list)

    def handle(self, observation: Observation) -> RoleOutcome | Probe:
        match observation:
            case Assigned(desired=desired, current=current, reconfigure=reconfigure):
                if not valid_name(desired.name):
                    name, version = desired.name, desired.version
                    self.emit(EventKind.ROLE_FAILED, name, version, "invalid role name")
                    return RoleOutcome.FAILED
                return self.assigned(desired, current, reconfigure)
            case AppliedByHand(desired=desired, current=current):
                record = self.state.role(desired.name)
                if desired.version in record.bad_versions:
                    record.bad_versions.remove(desired.version)
                return self.assigned(desired, current)
            case Fetched(role=role, floor=floor):
                record = self.state.role(role)
                record.floor = raise_floor(record.floor, floor)
                return RoleOutcome.UNCHANGED
            case Staged(role=role, version=version):
                self.state.role(role).pending = version
                self.do(Save(), Checkpoint("pending"), Swap(role, version))
                return self.start(role, version, Purpose.ACTIVATE)
            case StageFailed():
                return self.stage_failed(observation)
            case Started(error=None):
                return self.started(observation)
            case Started():
                return self.start_failed(observation)
            case Checked():
                return self.checked(observation)
            case KeepRunning(role=role, current=current):
                return self.keep_running(role, current)
            case Resumed(role=role, current=current):
                return self.resumed(role, current)
            case ResumeDone():
                if self.state.safe_mode.active:
                    self.do(StartSafeModeStack())
                return RoleOutcome.UNCHANGED
            case Unassigned(role=role):
                return self.unassigned(role)
            case OperatorEntered(reason=reason):
                self.enter(SafeModeCause.OPERATOR, reason)
                return RoleOutcome.APPLIED
            case OperatorLeft():
                if not self.state.safe_mode.active:
                    return RoleOutcome.UNCHANGED
                self.leave()
                self.do(KeepAllRunning())
                return RoleOutcome.APPLIED
            case OverlordWants(safe_mode=wanted):
                return self.overlord_wants(wanted)
            case SafeModeStackFailed(error=error):
                self.record_error(SAFE_MODE_ROLE, error)
                self.do(Save())
                return RoleOutcome.UNCHANGED

    def do(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def emit(
        self,
        kind: EventKind,
        role: str,
        version: Version | None,
        message: str,
        reason: str | None = None,
    ) -> None:
        self.do(Emit(RoleEvent(kind, role, version, message, reason)))

    def record_error(self, role: str, error: str) -> None:
        record = self.state.role(role)
        record.last_error = error[:MAX_ERROR_CHARS]
        record.last_error_at = self.rules.now

    # ------------------------------------------------------------ one role

    def assigned(
        self, desired: DesiredRole, current: Version | None, reconfigure: str | None = None
    ) -> RoleOutcome | Probe:
        name, version = desired.name, desired.version
        record = self.state.role(name)
        safe = self.state.safe_mode
        if safe.manual:
            return RoleOutcome.SKIPPED
        tripped = safe.tripped_by(name)
        if current == version and record.pending is None:
            if reconfigure is not None:  # also for a tripped role: new values may fix it
                return self.start(name, version, Purpose.RECONFIGURE, cause=reconfigure)
            return RoleOutcome.SKIPPED if tripped else self.keep_running(name, current)
        if version in record.bad_versions or (tripped and safe.version == version):
            if current is None or tripped:
                return RoleOutcome.SKIPPED
            return self.keep_running(name, current)
        return Install(desired)

    def stage_failed(self, failed: StageFailed) -> RoleOutcome:
        if failed.rejected:
            self.state.role(failed.role).mark_bad(failed.version)
        self.record_error(failed.role, f"{failed.version}: {failed.error}")
        message = "bundle rejected" if failed.rejected else "cannot stage bundle"
        self.emit(EventKind.ROLE_FAILED, failed.role, failed.version, message, failed.error)
        return RoleOutcome.FAILED

    def start(
        self, role: str, version: Version, purpose: Purpose, cause: str | None = None
    ) -> Probe:
        """Start ``version``, unless anti-rollback refuses it (checked before every start)."""
        refused = refusal(self.state.roles.get(role), version)
        if refused is None:
            return Start(role, version, purpose, cause)
        return Refuse(role, version, purpose, str(refused), cause)

    def started(self, started: Started) -> RoleOutcome:
        role, version = started.role, started.version
        record = self.state.role(role)
        if started.purpose is Purpose.ACTIVATE:
            record.pending = None
            record.rolling_back = None
            record.failures = 0
            record.confirm(version)
            self.do(Prune(role))
            self.emit(EventKind.ROLE_APPLIED, role, version, f"{role} {version} is healthy")
            if self.state.safe_mode.tripped_by(role):
                self.leave()
            self.do(Save())
            return RoleOutcome.APPLIED
        record.failures = 0
        if record.rolling_back is not None:
            cause = started.cause if started.purpose is Purpose.ROLL_BACK else record.last_error
            self.report_rollback(role, version, cause)
            return RoleOutcome.ROLLED_BACK
        if started.purpose is Purpose.RECONFIGURE:
            message = "restarted with the new configuration"
            self.emit(EventKind.ROLE_APPLIED, role, version, message, started.cause)
            if self.state.safe_mode.tripped_by(role):
                self.leave()
            self.do(Save())
            return RoleOutcome.APPLIED
        self.emit(EventKind.ROLE_APPLIED, role, version, "restarted and healthy")
        self.do(Save())
        return RoleOutcome.APPLIED

    def start_failed(self, started: Started) -> RoleOutcome | Probe:
        role, version, error = started.role, started.version, started.error or ""
        record = self.state.role(role)
        if started.purpose is Purpose.ROLL_BACK:
            record.rolling_back = None
            self.emit(EventKind.ROLE_FAILED, role, version, "rollback failed", error)
            self.record_error(role, f"{version}: {error}")
            self.do(Stop(role, version))
            self.count_failure(role, version, error)
            return RoleOutcome.FAILED
        if started.purpose in (Purpose.RESTART, Purpose.RECONFIGURE):
            message = {
                Purpose.RESTART: "restart failed",
                Purpose.RECONFIGURE: "restart with the new configuration failed",
            }[started.purpose]
            self.emit(EventKind.ROLE_FAILED, role, version, message, error)
            self.record_error(role, f"{version}: {error}")
            self.count_failure(role, version, error)
            return RoleOutcome.FAILED
        record.pending = None
        self.emit(EventKind.ROLE_FAILED, role, version, "health gate failed", error)
        self.record_error(role, f"{version}: {error}")
        previous = started.previous if started.previous != version else None
        if previous is not None and (refused := refusal(record, previous)) is not None:
            self.emit(EventKind.ROLE_FAILED, role, previous, "rollback refused", str(refused))
            previous = None
        if previous is None:
            self.do(Stop(role, version))
            self.count_failure(role, version, error)
            return RoleOutcome.FAILED
        record.mark_bad(version)
        record.rolling_back = version
        self.do(Stop(role, version), PointCurrent(role, previous), Save())
        self.do(Checkpoint("rolled-back"))
        return self.start(role, previous, Purpose.ROLL_BACK, cause=error)

    def checked(self, checked: Checked) -> RoleOutcome | Probe:
        role, version = checked.role, checked.version
        if not checked.healthy:
            return self.start(role, version, Purpose.RESTART)
        record = self.state.role(role)
        if record.rolling_back is not None:
            self.report_rollback(role, version, record.last_error)
        if record.failures:
            record.failures = 0
            self.do(Save())
        return RoleOutcome.UNCHANGED

    def keep_running(self, role: str, current: Version | None) -> RoleOutcome | Probe:
        """The role is where it should be: check it runs (then restart it once if not)."""
        if current is None:
            return RoleOutcome.SKIPPED
        self.state.role(role)
        return Check(role, current)

    def resumed(self, role: str, current: Version | None) -> RoleOutcome | Probe:
        record = self.state.role(role)
        safe = self.state.safe_mode
        if current is None or safe.manual or safe.tripped_by(role):
            return RoleOutcome.SKIPPED
        if record.pending is not None and record.pending == current:
            return self.start(role, current, Purpose.ACTIVATE)
        record.pending = None
        return self.keep_running(role, current)

    def report_rollback(self, role: str, running: Version, cause: str | None) -> None:
        """``running`` replaced ``rolling_back`` and runs healthy: say so, once. The flag was
        saved with the swap back, so a power cut before this reports it at the next start
        (queued before the flag is cleared: at least once)."""
        record = self.state.role(role)
        failed, record.rolling_back = record.rolling_back, None
        self.emit(
            EventKind.ROLE_ROLLBACK,
            role,
            running,
            f"{role} rolled back from {failed} to {running}",
            cause,
        )
        self.do(Save())

    def count_failure(self, role: str, version: Version, error: str) -> None:
        record = self.state.role(role)
        record.failures += 1
        self.do(Save())
        if record.failures >= self.rules.safe_mode_after and not self.state.safe_mode.active:
            self.enter(
                SafeModeCause.CRASH_LOOP,
                f"role {role} {version} failed {record.failures} times in a row: {error}",
                role=role,
                version=version,
            )

    def unassigned(self, role: str) -> RoleOutcome:
        """Stop the role and drop its versions; its ``state/`` data and signed floor stay."""
        self.do(StopCurrent(role), Delete(role))
        floor = self.state.role(role).floor
        self.state.roles.pop(role)
        if floor is not None:  # a signed floor outlives the role: re-adding it cannot go below
            self.state.roles[role] = RoleRecord(floor=floor)
        self.do(Save())
        return RoleOutcome.APPLIED

    # ------------------------------------------------------------ safe mode

    def overlord_wants(self, wanted: bool) -> RoleOutcome:
        """The Overlord's request behaves like an operator's, but the Overlord only ends a
        safe mode it asked for itself: an operator's or one tripped by failures stays."""
        cause = self.state.safe_mode.cause
        if wanted and not self.state.safe_mode.manual:
            self.enter(SafeModeCause.OVERLORD, "requested by the Overlord")
            return RoleOutcome.APPLIED
        if not wanted and cause is SafeModeCause.OVERLORD:
            self.leave()
            self.do(KeepAllRunning())
            return RoleOutcome.APPLIED
        return RoleOutcome.UNCHANGED

    def enter(
        self,
        cause: SafeModeCause,
        reason: str,
        *,
        role: str | None = None,
        version: Version | None = None,
    ) -> None:
        self.state.safe_mode = SafeModeRecord(
            cause=cause, reason=reason, role=role, version=version, since=self.rules.now
        )
        self.do(Save(), StopCurrent(role) if role else StopAllRoles(), StartSafeModeStack())
        self.emit(EventKind.SAFE_MODE_ENTERED, role or SAFE_MODE_ROLE, version, reason)

    def leave(self) -> None:
        reason = self.state.safe_mode.reason
        self.do(StopSafeModeStack())
        self.state.safe_mode = SafeModeRecord()
        for record in self.state.roles.values():
            record.failures = 0
        self.do(Save())
        self.emit(EventKind.SAFE_MODE_LEFT, SAFE_MODE_ROLE, None, "safe mode left", reason or None)
