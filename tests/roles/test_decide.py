"""Every role-manager decision, without Docker: one observation in, state/actions/result out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from fleetcore.version import Version
from fleetcore.wire import DesiredRole, EventKind
from updater.roles.decide import (
    AppliedByHand,
    Assigned,
    Check,
    Checked,
    Checkpoint,
    Delete,
    Emit,
    Fetched,
    Install,
    KeepAllRunning,
    KeepRunning,
    Observation,
    OperatorEntered,
    OperatorLeft,
    OverlordWants,
    PointCurrent,
    Prune,
    Purpose,
    Refuse,
    Resumed,
    ResumeDone,
    RoleOutcome,
    Rules,
    SafeModeStackFailed,
    Save,
    Staged,
    StageFailed,
    Start,
    Started,
    StartSafeModeStack,
    Stop,
    StopAllRoles,
    StopCurrent,
    StopSafeModeStack,
    Swap,
    Unassigned,
    decide,
    refusal,
)
from updater.roles.record import ManagerState, RoleRecord, SafeModeCause, SafeModeRecord

NOW = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
RULES = Rules(now=NOW, safe_mode_after=3)
ERR = "web: unhealthy"


def v(text: str) -> Version:
    return Version(text)


def want(version: str, name: str = "webapp") -> DesiredRole:
    return DesiredRole(name=name, version=v(version), target=f"roles/{name}/{version}")


def crash_loop(role: str = "webapp", version: str = "1.0.0") -> SafeModeRecord:
    return SafeModeRecord(
        cause=SafeModeCause.CRASH_LOOP, role=role, version=v(version), reason="x", since=NOW
    )


OPERATOR = SafeModeRecord(cause=SafeModeCause.OPERATOR, reason="bench", since=NOW)
OVERLORD = SafeModeRecord(
    cause=SafeModeCause.OVERLORD, reason="requested by the Overlord", since=NOW
)


def state(safe: SafeModeRecord | None = None, **fields: Any) -> ManagerState:
    result = ManagerState(roles={"webapp": RoleRecord(**fields)})
    if safe is not None:
        result.safe_mode = safe
    return result


@dataclass(frozen=True)
class Case:
    start: ManagerState
    observation: Observation
    result: RoleOutcome | object
    events: list[tuple[EventKind, str]] = field(default_factory=list)
    actions: list[object] | None = None  # None: not checked
    record: dict[str, Any] = field(default_factory=dict)  # webapp's record afterwards
    cause: SafeModeCause | None = None  # safe mode afterwards, if checked


FAILED_START = Started("webapp", v("2.0.0"), Purpose.ACTIVATE, ERR, previous=v("1.0.0"))

CASES = {
    # -- assignment: what an apply does with a desired role
    "a new role is installed": Case(state(), Assigned(want("1.0.0"), None), Install(want("1.0.0"))),
    "the running version is checked, not reinstalled": Case(
        state(), Assigned(want("1.0.0"), v("1.0.0")), Check("webapp", v("1.0.0"))
    ),
    "a cut swap is finished by installing again": Case(
        state(pending=v("1.0.0")), Assigned(want("1.0.0"), v("1.0.0")), Install(want("1.0.0"))
    ),
    "a bad version is not retried; the running one is checked": Case(
        state(bad_versions=[v("2.0.0")]),
        Assigned(want("2.0.0"), v("1.0.0")),
        Check("webapp", v("1.0.0")),
    ),
    "a bad version with nothing installed is skipped": Case(
        state(bad_versions=[v("2.0.0")]), Assigned(want("2.0.0"), None), RoleOutcome.SKIPPED
    ),
    "an invalid name is refused": Case(
        ManagerState(),
        Assigned(want("1.0.0", name="Web_App"), None),
        RoleOutcome.FAILED,
        [(EventKind.ROLE_FAILED, "invalid role name")],
    ),
    "the safe-mode name cannot be assigned": Case(
        ManagerState(),
        Assigned(want("1.0.0", name="safe-mode"), None),
        RoleOutcome.FAILED,
        [(EventKind.ROLE_FAILED, "invalid role name")],
    ),
    "an operator's safe mode skips every apply": Case(
        state(OPERATOR), Assigned(want("2.0.0"), v("1.0.0")), RoleOutcome.SKIPPED
    ),
    "the Overlord's safe mode skips every apply": Case(
        state(OVERLORD), Assigned(want("2.0.0"), v("1.0.0")), RoleOutcome.SKIPPED
    ),
    "the tripping role is not restarted in safe mode": Case(
        state(crash_loop()), Assigned(want("1.0.0"), v("1.0.0")), RoleOutcome.SKIPPED
    ),
    "the tripping version is not reinstalled in safe mode": Case(
        state(crash_loop(version="1.1.0")), Assigned(want("1.1.0"), v("1.0.0")), RoleOutcome.SKIPPED
    ),
    "a new version of the tripping role is installed (a fix)": Case(
        state(crash_loop()), Assigned(want("1.0.1"), v("1.0.0")), Install(want("1.0.1"))
    ),
    "another role's crash loop does not stop this role's apply": Case(
        state(crash_loop(role="other")), Assigned(want("2.0.0"), v("1.0.0")), Install(want("2.0.0"))
    ),
    "an operator may retry a bad version by hand": Case(
        state(bad_versions=[v("2.0.0")]),
        AppliedByHand(want("2.0.0"), v("1.0.0")),
        Install(want("2.0.0")),
        record={"bad_versions": []},
    ),
    # -- staging
    "a signed floor is kept": Case(
        state(),
        Fetched("webapp", v("2.0.0"), v("2.0.0")),
        RoleOutcome.UNCHANGED,
        record={"floor": v("2.0.0")},
    ),
    "a signed floor never goes down": Case(
        state(floor=v("3.0.0")),
        Fetched("webapp", v("3.1.0"), v("1.0.0")),
        RoleOutcome.UNCHANGED,
        record={"floor": v("3.0.0")},
    ),
    "a rejected bundle marks the version bad": Case(
        state(),
        StageFailed("webapp", v("2.0.0"), "no healthcheck", rejected=True),
        RoleOutcome.FAILED,
        [(EventKind.ROLE_FAILED, "bundle rejected")],
        record={"bad_versions": [v("2.0.0")], "last_error": "2.0.0: no healthcheck"},
    ),
    "a failed fetch is retried, not marked bad": Case(
        state(),
        StageFailed("webapp", v("2.0.0"), "connection refused", rejected=False),
        RoleOutcome.FAILED,
        [(EventKind.ROLE_FAILED, "cannot stage bundle")],
        record={"bad_versions": [], "failures": 0},
    ),
    "a staged version is saved as pending before the swap": Case(
        state(),
        Staged("webapp", v("2.0.0")),
        Start("webapp", v("2.0.0"), Purpose.ACTIVATE),
        actions=[Save(), Checkpoint("pending"), Swap("webapp", v("2.0.0"))],
        record={"pending": v("2.0.0")},
    ),
    # -- activation
    "a healthy version is applied and confirmed": Case(
        state(pending=v("2.0.0"), failures=2),
        Started("webapp", v("2.0.0"), Purpose.ACTIVATE, None),
        RoleOutcome.APPLIED,
        [(EventKind.ROLE_APPLIED, "webapp 2.0.0 is healthy")],
        [Prune("webapp"), Save()],
        record={"pending": None, "failures": 0, "confirmed": v("2.0.0")},
    ),
    "a fix of the tripping role leaves safe mode": Case(
        state(crash_loop(), failures=3),
        Started("webapp", v("1.0.1"), Purpose.ACTIVATE, None),
        RoleOutcome.APPLIED,
        [
            (EventKind.ROLE_APPLIED, "webapp 1.0.1 is healthy"),
            (EventKind.SAFE_MODE_LEFT, "safe mode left"),
        ],
        [Prune("webapp"), StopSafeModeStack(), Save(), Save()],
        cause=SafeModeCause.NONE,
    ),
    "another role's success does not leave safe mode": Case(
        state(crash_loop(role="other")),
        Started("webapp", v("2.0.0"), Purpose.ACTIVATE, None),
        RoleOutcome.APPLIED,
        [(EventKind.ROLE_APPLIED, "webapp 2.0.0 is healthy")],
        cause=SafeModeCause.CRASH_LOOP,
    ),
    "a health failure rolls back to previous": Case(
        state(pending=v("2.0.0")),
        FAILED_START,
        Start("webapp", v("1.0.0"), Purpose.ROLL_BACK, cause=ERR),
        [(EventKind.ROLE_FAILED, "health gate failed")],
        [
            Stop("webapp", v("2.0.0")),
            PointCurrent("webapp", v("1.0.0")),
            Save(),
            Checkpoint("rolled-back"),
        ],
        record={"pending": None, "bad_versions": [v("2.0.0")], "rolling_back": v("2.0.0")},
    ),
    "a health failure without previous is a failure of the role": Case(
        state(pending=v("2.0.0")),
        Started("webapp", v("2.0.0"), Purpose.ACTIVATE, ERR, previous=None),
        RoleOutcome.FAILED,
        [(EventKind.ROLE_FAILED, "health gate failed")],
        [Stop("webapp", v("2.0.0")), Save()],
        record={"failures": 1, "bad_versions": [], "last_error": f"2.0.0: {ERR}"},
        cause=SafeModeCause.NONE,
    ),
    "previous naming the failed version is no previous": Case(
        state(),
        Started("webapp", v("2.0.0"), Purpose.ACTIVATE, ERR, previous=v("2.0.0")),
        RoleOutcome.FAILED,
        [(EventKind.ROLE_FAILED, "health gate failed")],
        record={"failures": 1},
    ),
    "a rollback below the floor is refused": Case(
        state(floor=v("2.0.0")),
        FAILED_START,
        RoleOutcome.FAILED,
        [
            (EventKind.ROLE_FAILED, "health gate failed"),
            (EventKind.ROLE_FAILED, "rollback refused"),
        ],
        record={"failures": 1},
    ),
    "the third failure in a row trips safe mode for that role": Case(
        state(failures=2),
        Started("webapp", v("2.0.0"), Purpose.ACTIVATE, ERR, previous=None),
        RoleOutcome.FAILED,
        [
            (EventKind.ROLE_FAILED, "health gate failed"),
            (
                EventKind.SAFE_MODE_ENTERED,
                "role webapp 2.0.0 failed 3 times in a row: web: unhealthy",
            ),
        ],
        [Stop("webapp", v("2.0.0")), Save(), Save(), StopCurrent("webapp"), StartSafeModeStack()],
        record={"failures": 3},
        cause=SafeModeCause.CRASH_LOOP,
    ),
    "failures in another role's safe mode do not enter it again": Case(
        state(crash_loop(role="other"), failures=5),
        Started("webapp", v("2.0.0"), Purpose.ACTIVATE, ERR, previous=None),
        RoleOutcome.FAILED,
        [(EventKind.ROLE_FAILED, "health gate failed")],
        record={"failures": 6},
        cause=SafeModeCause.CRASH_LOOP,
    ),
    # -- rollback
    "a healthy rollback is reported once": Case(
        state(rolling_back=v("2.0.0"), failures=1),
        Started("webapp", v("1.0.0"), Purpose.ROLL_BACK, None, cause=ERR),
        RoleOutcome.ROLLED_BACK,
        [(EventKind.ROLE_ROLLBACK, "webapp rolled back from 2.0.0 to 1.0.0")],
        [Save()],
        record={"rolling_back": None, "failures": 0},
    ),
    "a failed rollback is a failure of the role": Case(
        state(rolling_back=v("2.0.0")),
        Started("webapp", v("1.0.0"), Purpose.ROLL_BACK, "crashed", cause=ERR),
        RoleOutcome.FAILED,
        [(EventKind.ROLE_FAILED, "rollback failed")],
        [Stop("webapp", v("1.0.0")), Save()],
        record={"rolling_back": None, "failures": 1, "last_error": "1.0.0: crashed"},
    ),
    # -- keeping a role running
    "a healthy role resets its failure count": Case(
        state(failures=2),
        Checked("webapp", v("1.0.0"), healthy=True),
        RoleOutcome.UNCHANGED,
        actions=[Save()],
        record={"failures": 0},
    ),
    "a healthy role with nothing to report saves nothing": Case(
        state(), Checked("webapp", v("1.0.0"), healthy=True), RoleOutcome.UNCHANGED, actions=[]
    ),
    "a rollback cut by a power cut is reported by the next healthy check": Case(
        state(rolling_back=v("2.0.0"), last_error="2.0.0: unhealthy"),
        Checked("webapp", v("1.0.0"), healthy=True),
        RoleOutcome.UNCHANGED,
        [(EventKind.ROLE_ROLLBACK, "webapp rolled back from 2.0.0 to 1.0.0")],
        record={"rolling_back": None},
    ),
    "an unhealthy role is restarted once": Case(
        state(),
        Checked("webapp", v("1.0.0"), healthy=False),
        Start("webapp", v("1.0.0"), Purpose.RESTART),
    ),
    "a role below a newer floor is not restarted": Case(
        state(floor=v("1.1.0")),
        Checked("webapp", v("1.0.0"), healthy=False),
        Refuse(
            "webapp",
            v("1.0.0"),
            Purpose.RESTART,
            "refusing version 1.0.0: it is below this device's version floor 1.1.0",
        ),
    ),
    "a restarted role is applied again": Case(
        state(failures=1),
        Started("webapp", v("1.0.0"), Purpose.RESTART, None),
        RoleOutcome.APPLIED,
        [(EventKind.ROLE_APPLIED, "restarted and healthy")],
        record={"failures": 0},
    ),
    "a restart that finishes a rollback reports it": Case(
        state(rolling_back=v("2.0.0"), last_error="2.0.0: unhealthy"),
        Started("webapp", v("1.0.0"), Purpose.RESTART, None),
        RoleOutcome.ROLLED_BACK,
        [(EventKind.ROLE_ROLLBACK, "webapp rolled back from 2.0.0 to 1.0.0")],
    ),
    "a failed restart is counted": Case(
        state(failures=1),
        Started("webapp", v("1.0.0"), Purpose.RESTART, "exited 1"),
        RoleOutcome.FAILED,
        [(EventKind.ROLE_FAILED, "restart failed")],
        record={"failures": 2},
        cause=SafeModeCause.NONE,
    ),
    "a crash loop trips safe mode after N restarts": Case(
        state(failures=2),
        Started("webapp", v("1.0.0"), Purpose.RESTART, "exited 1"),
        RoleOutcome.FAILED,
        [
            (EventKind.ROLE_FAILED, "restart failed"),
            (EventKind.SAFE_MODE_ENTERED, "role webapp 1.0.0 failed 3 times in a row: exited 1"),
        ],
        cause=SafeModeCause.CRASH_LOOP,
    ),
    # -- new configuration: the running version's rendered .env changed
    "a changed .env restarts the running version": Case(
        state(),
        Assigned(want("1.0.0"), v("1.0.0"), reconfigure="FPS changed"),
        Start("webapp", v("1.0.0"), Purpose.RECONFIGURE, cause="FPS changed"),
    ),
    "a changed .env of another version waits for the install": Case(
        state(),
        Assigned(want("2.0.0"), v("1.0.0"), reconfigure="FPS changed"),
        Install(want("2.0.0")),
    ),
    "a changed .env in an operator's safe mode is skipped": Case(
        state(OPERATOR),
        Assigned(want("1.0.0"), v("1.0.0"), reconfigure="FPS changed"),
        RoleOutcome.SKIPPED,
    ),
    "a changed .env restarts even the role that tripped safe mode": Case(
        state(crash_loop()),
        Assigned(want("1.0.0"), v("1.0.0"), reconfigure="FPS changed"),
        Start("webapp", v("1.0.0"), Purpose.RECONFIGURE, cause="FPS changed"),
    ),
    "a changed .env is not restarted below a newer floor": Case(
        state(floor=v("1.1.0")),
        Assigned(want("1.0.0"), v("1.0.0"), reconfigure="FPS changed"),
        Refuse(
            "webapp",
            v("1.0.0"),
            Purpose.RECONFIGURE,
            "refusing version 1.0.0: it is below this device's version floor 1.1.0",
            cause="FPS changed",
        ),
    ),
    "a role restarted with its new configuration is applied": Case(
        state(failures=1),
        Started("webapp", v("1.0.0"), Purpose.RECONFIGURE, None, cause="FPS changed"),
        RoleOutcome.APPLIED,
        [(EventKind.ROLE_APPLIED, "restarted with the new configuration")],
        record={"failures": 0},
    ),
    "a new configuration that works ends the safe mode its role tripped": Case(
        state(crash_loop(), failures=3),
        Started("webapp", v("1.0.0"), Purpose.RECONFIGURE, None, cause="FPS changed"),
        RoleOutcome.APPLIED,
        [
            (EventKind.ROLE_APPLIED, "restarted with the new configuration"),
            (EventKind.SAFE_MODE_LEFT, "safe mode left"),
        ],
        cause=SafeModeCause.NONE,
    ),
    "a failed restart with the new configuration is counted": Case(
        state(failures=2),
        Started("webapp", v("1.0.0"), Purpose.RECONFIGURE, "exited 1", cause="FPS changed"),
        RoleOutcome.FAILED,
        [
            (EventKind.ROLE_FAILED, "restart with the new configuration failed"),
            (EventKind.SAFE_MODE_ENTERED, "role webapp 1.0.0 failed 3 times in a row: exited 1"),
        ],
        cause=SafeModeCause.CRASH_LOOP,
    ),
    "keeping a role with no current version skips it": Case(
        state(), KeepRunning("webapp", None), RoleOutcome.SKIPPED
    ),
    # -- resume at agent start
    "a swap cut before its gate is activated again": Case(
        state(pending=v("2.0.0")),
        Resumed("webapp", v("2.0.0")),
        Start("webapp", v("2.0.0"), Purpose.ACTIVATE),
    ),
    "a swap cut before the link moved is forgotten": Case(
        state(pending=v("2.0.0")),
        Resumed("webapp", v("1.0.0")),
        Check("webapp", v("1.0.0")),
        record={"pending": None},
    ),
    "resume leaves roles stopped in an operator's safe mode": Case(
        state(OPERATOR), Resumed("webapp", v("1.0.0")), RoleOutcome.SKIPPED
    ),
    "resume leaves the tripping role stopped": Case(
        state(crash_loop()), Resumed("webapp", v("1.0.0")), RoleOutcome.SKIPPED
    ),
    "resume starts the other roles in a crash-loop safe mode": Case(
        state(crash_loop(role="other")), Resumed("webapp", v("1.0.0")), Check("webapp", v("1.0.0"))
    ),
    "resume starts the safe-mode stack in safe mode": Case(
        state(OPERATOR), ResumeDone(), RoleOutcome.UNCHANGED, actions=[StartSafeModeStack()]
    ),
    "resume starts no safe-mode stack otherwise": Case(
        state(), ResumeDone(), RoleOutcome.UNCHANGED, actions=[]
    ),
    # -- safe mode on request
    "an operator enters safe mode: every role stops": Case(
        state(),
        OperatorEntered("bench"),
        RoleOutcome.APPLIED,
        [(EventKind.SAFE_MODE_ENTERED, "bench")],
        [Save(), StopAllRoles(), StartSafeModeStack()],
        cause=SafeModeCause.OPERATOR,
    ),
    "an operator leaves safe mode: every role is started again": Case(
        state(OPERATOR, failures=4),
        OperatorLeft(),
        RoleOutcome.APPLIED,
        [(EventKind.SAFE_MODE_LEFT, "safe mode left")],
        [StopSafeModeStack(), Save(), KeepAllRunning()],
        record={"failures": 0},
        cause=SafeModeCause.NONE,
    ),
    "leaving safe mode when not in it does nothing": Case(
        state(), OperatorLeft(), RoleOutcome.UNCHANGED, actions=[]
    ),
    "an operator may end a crash-loop safe mode": Case(
        state(crash_loop()),
        OperatorLeft(),
        RoleOutcome.APPLIED,
        [(EventKind.SAFE_MODE_LEFT, "safe mode left")],
        cause=SafeModeCause.NONE,
    ),
    "the Overlord enters safe mode": Case(
        state(),
        OverlordWants(True),
        RoleOutcome.APPLIED,
        [(EventKind.SAFE_MODE_ENTERED, "requested by the Overlord")],
        cause=SafeModeCause.OVERLORD,
    ),
    "the Overlord's request replaces a crash loop": Case(
        state(crash_loop()),
        OverlordWants(True),
        RoleOutcome.APPLIED,
        [(EventKind.SAFE_MODE_ENTERED, "requested by the Overlord")],
        cause=SafeModeCause.OVERLORD,
    ),
    "the Overlord's repeated request changes nothing": Case(
        state(OVERLORD),
        OverlordWants(True),
        RoleOutcome.UNCHANGED,
        actions=[],
        cause=SafeModeCause.OVERLORD,
    ),
    "the Overlord's request does not take over an operator's": Case(
        state(OPERATOR),
        OverlordWants(True),
        RoleOutcome.UNCHANGED,
        actions=[],
        cause=SafeModeCause.OPERATOR,
    ),
    "the Overlord ends its own safe mode": Case(
        state(OVERLORD),
        OverlordWants(False),
        RoleOutcome.APPLIED,
        [(EventKind.SAFE_MODE_LEFT, "safe mode left")],
        [StopSafeModeStack(), Save(), KeepAllRunning()],
        cause=SafeModeCause.NONE,
    ),
    "the Overlord does not end an operator's safe mode": Case(
        state(OPERATOR),
        OverlordWants(False),
        RoleOutcome.UNCHANGED,
        actions=[],
        cause=SafeModeCause.OPERATOR,
    ),
    "the Overlord does not end a crash loop": Case(
        state(crash_loop()),
        OverlordWants(False),
        RoleOutcome.UNCHANGED,
        actions=[],
        cause=SafeModeCause.CRASH_LOOP,
    ),
    "a safe-mode stack that did not start is recorded": Case(
        state(OPERATOR), SafeModeStackFailed("no image"), RoleOutcome.UNCHANGED, actions=[Save()]
    ),
    # -- removal
    "an unassigned role is stopped and removed, its floor kept": Case(
        state(floor=v("2.0.0"), failures=2, bad_versions=[v("1.0.0")]),
        Unassigned("webapp"),
        RoleOutcome.APPLIED,
        actions=[StopCurrent("webapp"), Delete("webapp"), Save()],
        record={"floor": v("2.0.0"), "failures": 0, "bad_versions": []},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decision(case: Case) -> None:
    before = case.start.model_copy(deep=True)
    decision = decide(case.start, case.observation, RULES)
    assert decision.result == case.result
    emitted = [a.event for a in decision.actions if isinstance(a, Emit)]
    assert [(e.kind, e.message) for e in emitted] == case.events
    if case.actions is not None:
        assert [a for a in decision.actions if not isinstance(a, Emit)] == case.actions
    record = decision.state.roles.get("webapp")
    for name, expected in case.record.items():
        assert record is not None and getattr(record, name) == expected, name
    if case.cause is not None:
        assert decision.state.safe_mode.cause is case.cause
    assert case.start == before  # decide works on a copy


def test_an_unassigned_role_without_a_floor_leaves_no_record() -> None:
    decision = decide(state(failures=1), Unassigned("webapp"), RULES)
    assert "webapp" not in decision.state.roles


def test_safe_mode_entered_by_a_crash_loop_names_the_role_and_version() -> None:
    decision = decide(state(failures=2), Started("webapp", v("1.0.0"), Purpose.RESTART, "x"), RULES)
    safe = decision.state.safe_mode
    assert (safe.cause, safe.role, safe.version, safe.since) == (
        SafeModeCause.CRASH_LOOP,
        "webapp",
        v("1.0.0"),
        NOW,
    )
    [entered] = [a.event for a in decision.actions if isinstance(a, Emit)][1:]
    assert (entered.role, entered.version) == ("webapp", v("1.0.0"))


def test_a_rollback_is_reported_with_the_failure_that_caused_it() -> None:
    decision = decide(
        state(rolling_back=v("2.0.0"), last_error="stale"),
        Started("webapp", v("1.0.0"), Purpose.ROLL_BACK, None, cause=ERR),
        RULES,
    )
    [event] = [a.event for a in decision.actions if isinstance(a, Emit)]
    assert (event.version, event.reason) == (v("1.0.0"), ERR)


def test_the_threshold_is_the_configured_one() -> None:
    one = Rules(now=NOW, safe_mode_after=1)
    decision = decide(state(), Started("webapp", v("1.0.0"), Purpose.RESTART, "x"), one)
    assert decision.state.safe_mode.cause is SafeModeCause.CRASH_LOOP


@pytest.mark.parametrize(
    ("record", "version", "refused"),
    [
        (None, "1.0.0", None),
        (RoleRecord(), "1.0.0", None),
        (RoleRecord(bad_versions=[v("1.0.0")]), "1.0.0", "failed its health gate here"),
        (RoleRecord(confirmed=v("2.0.0")), "1.0.0", "lower than 2.0.0"),
        (RoleRecord(confirmed=v("2.0.0")), "2.0.0", None),
        (RoleRecord(floor=v("1.5.0")), "1.0.0", "below this device's version floor 1.5.0"),
        (RoleRecord(floor=v("1.5.0")), "1.5.0", None),
    ],
)
def test_anti_rollback_refusal(
    record: RoleRecord | None, version: str, refused: str | None
) -> None:
    result = refusal(record, v(version))
    if refused is None:
        assert result is None
    else:
        assert result is not None and refused in str(result)
