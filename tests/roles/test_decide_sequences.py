"""Random sequences of polls, requests, failures and power cuts against the pure decisions.

An in-memory device (links, running containers, the saved state, the safe-mode stack) carries
out the actions the way :class:`~updater.roles.manager.RoleManager` does; Hypothesis draws what
the device would observe (a start passing its gate or not, a fetch failing, a power cut between
two actions) and checks the invariants after every decision and every command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetcore.version import Version
from fleetcore.wire import DesiredRole
from updater.roles.decide import (
    AppliedByHand,
    Assigned,
    Check,
    Checked,
    Decision,
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
    Purpose,
    Refuse,
    Resumed,
    ResumeDone,
    RoleEvent,
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
from updater.roles.record import ManagerState, SafeModeCause

RULES = Rules(now=datetime(2026, 12, 4, 6, 0, tzinfo=UTC), safe_mode_after=3)
ROLES = ("webapp", "db")
VERSIONS = tuple(Version(v) for v in ("1.0.0", "1.1.0", "2.0.0", "3.0.0"))
# Most targets declare no floor; one that does makes older versions unstartable.
FLOORS = (None, None, None, None, *VERSIONS)
FETCHES = ("ok", "ok", "ok", "ok", "rejected", "network")
MAX_STEPS = 40  # decisions in one flow; a flow that does not end is a defect


class PowerCut(Exception):
    pass


@dataclass
class Device:
    """What the runner would find on a device: links, containers, the saved state."""

    data: st.DataObject
    state: ManagerState = field(default_factory=ManagerState)
    saved: ManagerState = field(default_factory=ManagerState)
    current: dict[str, Version] = field(default_factory=dict)
    previous: dict[str, Version] = field(default_factory=dict)
    staged: dict[str, set[Version]] = field(default_factory=dict)
    running: dict[str, Version] = field(default_factory=dict)
    stack_running: bool = False
    events: list[RoleEvent] = field(default_factory=list)
    cut_at: int | None = None  # cut the power before this action of the command
    done: int = 0  # actions carried out in this command
    starts_pass: bool | None = None  # None: drawn for each start and health check
    # Versions that failed their gate and were replaced by previous, per role assignment,
    # once saved (a power cut before that retries the version, as it should).
    rolled_back_from: dict[str, set[Version]] = field(default_factory=dict)
    condemned: list[tuple[str, Version]] = field(default_factory=list)

    def passes(self) -> bool:
        if self.starts_pass is not None:
            return self.starts_pass
        return self.data.draw(st.booleans())

    # ------------------------------------------------------------ the runner's loop

    def drive(self, observation: Observation) -> RoleOutcome:
        for _ in range(MAX_STEPS):
            decision = decide(self.state, observation, RULES)
            check_decision(self.state, observation, decision)
            self.state = decision.state
            match observation, decision.result:
                case Started(purpose=Purpose.ACTIVATE, error=str()), Start(
                    purpose=Purpose.ROLL_BACK
                ):
                    self.condemned.append((observation.role, observation.version))
                case Unassigned(role=role), _:  # assigning it again is a new target
                    self.rolled_back_from.pop(role, None)
            for action in decision.actions:
                if self.done == self.cut_at:
                    raise PowerCut
                self.done += 1
                self.carry_out(action)
            if isinstance(decision.result, RoleOutcome):
                return decision.result
            observation = self.answer(decision.result)
        raise AssertionError(f"no outcome after {MAX_STEPS} decisions")

    def carry_out(self, action: object) -> None:
        match action:
            case Emit(event=event):
                self.events.append(event)
            case Save():
                self.saved = self.state.model_copy(deep=True)
                for role, version in self.condemned:
                    self.rolled_back_from.setdefault(role, set()).add(version)
                self.condemned.clear()
            case Swap(role=role, version=version):
                old = self.current.get(role)
                if old is not None and old != version:
                    self.previous[role] = old
                self.current[role] = version
            case PointCurrent(role=role, version=version):
                self.current[role] = version
            case Stop(role=role):
                self.running.pop(role, None)  # compose down stops the role's project
            case StopCurrent(role=role):
                if role in self.current:
                    self.running.pop(role, None)
            case StopAllRoles():
                for role in list(self.current):
                    self.running.pop(role, None)
            case Delete(role=role):
                for links in (self.current, self.previous, self.staged):
                    links.pop(role, None)
            case StartSafeModeStack():
                self.stack_running = True
            case StopSafeModeStack():
                self.stack_running = False
            case KeepAllRunning():
                for role in sorted(self.current):
                    self.drive(KeepRunning(role, self.current.get(role)))

    def answer(self, probe: object) -> Observation:
        match probe:
            case Install(desired=desired):
                return self.install(desired)
            case Start(role=role, version=version, purpose=purpose, cause=cause):
                assert refusal(self.state.roles.get(role), version) is None, "refused start"
                assert self.current.get(role) == version, "started what current does not name"
                assert version not in self.rolled_back_from.get(role, set()), "failed again"
                self.running[role] = version  # a failing gate leaves it crash-looping
                healthy = self.passes()
                error = None if healthy else "unhealthy"
                return Started(role, version, purpose, error, self.previous.get(role), cause)
            case Refuse(role=role, version=version, purpose=purpose, error=error, cause=cause):
                return Started(role, version, purpose, error, self.previous.get(role), cause)
            case Check(role=role, version=version):
                healthy = self.running.get(role) == version and self.passes()
                return Checked(role, version, healthy)
        raise AssertionError(probe)

    def install(self, desired: DesiredRole) -> Observation:
        name, version = desired.name, desired.version
        if version not in self.staged.get(name, set()):
            fetched: str = "ok"
            floor: Version | None = None
            if self.starts_pass is None:
                fetched = self.data.draw(st.sampled_from(FETCHES))
                floor = self.data.draw(st.sampled_from(FLOORS))
            if fetched == "network":
                return StageFailed(name, version, "connection refused", rejected=False)
            self.drive(Fetched(name, version, floor))
            if refusal(self.state.roles.get(name), version) is not None:
                return StageFailed(name, version, "refused", rejected=True)
            if fetched == "rejected":
                return StageFailed(name, version, "no healthcheck", rejected=True)
            self.staged.setdefault(name, set()).add(version)
        elif refusal(self.state.roles.get(name), version) is not None:
            return StageFailed(name, version, "refused", rejected=True)
        return Staged(name, version)

    # ------------------------------------------------------------ commands

    def poll(self, desired: list[DesiredRole], *, reconfigure: bool = False) -> None:
        changed = "FPS changed" if reconfigure else None
        for role in desired:
            self.drive(Assigned(role, self.current.get(role.name), changed))
        wanted = {role.name for role in desired}
        for name in sorted(self.current):
            if name not in wanted:
                self.drive(Unassigned(name))

    def power_cut(self) -> None:
        """Every container and the unsaved state are gone; the agent starts and resumes."""
        self.running.clear()
        self.stack_running = False
        self.state = self.saved.model_copy(deep=True)
        self.condemned.clear()
        self.cut_at = None  # one cut at a time: the resume itself runs to the end
        for name in sorted(self.current):
            self.drive(Resumed(name, self.current.get(name)))
        self.drive(ResumeDone())


def check_decision(before: ManagerState, observation: Observation, decision: Decision) -> None:
    after = decision.state
    safe = after.safe_mode
    assert safe.active is (safe.cause is not SafeModeCause.NONE)
    assert (safe.reason is not None) is safe.active
    assert (safe.since is not None) is safe.active
    assert (safe.role is not None) is (safe.cause is SafeModeCause.CRASH_LOOP)
    for name, record in after.roles.items():
        assert record.failures >= 0
        if record.failures >= RULES.safe_mode_after:
            assert safe.active, f"{name} failed {record.failures} times outside safe mode"
        old = before.roles.get(name)
        if old is None or isinstance(observation, AppliedByHand | Unassigned):
            continue
        # What anti-rollback rests on only rises: a bad version is never retried.
        assert set(old.bad_versions) <= set(record.bad_versions)
        for mark in ("floor", "confirmed"):
            was, now = getattr(old, mark), getattr(record, mark)
            assert was is None or (now is not None and now >= was), mark


def check_device(device: Device) -> None:
    """After a command ran to its end."""
    safe = device.state.safe_mode
    for role, version in device.running.items():
        assert device.current.get(role) == version, f"{role} runs {version}, not what is linked"
    assert device.stack_running is safe.active
    if safe.manual:
        assert not device.running, "a role runs in an operator's or the Overlord's safe mode"


desired_roles = st.lists(
    st.tuples(st.sampled_from(ROLES), st.sampled_from(VERSIONS)),
    max_size=2,
    unique_by=lambda t: t[0],
).map(
    lambda pairs: [
        DesiredRole(name=name, version=version, target=f"roles/{name}/{version}")
        for name, version in pairs
    ]
)
# Polls most of the time: safe mode on request is rarer than roles failing and recovering.
# "repeat" polls the last desired roles again, as the Overlord does until a rollout moves on.
KINDS = (
    ("poll",) * 4
    + ("repeat",) * 4
    + ("crash",) * 2
    + ("reconfigure",) * 2
    + ("operator-enter", "operator-leave", "overlord-on", "overlord-off", "stack-failed")
)
commands = st.tuples(
    st.sampled_from(KINDS),
    desired_roles,
    # A power cut before the action with this index, in about one command of three.
    st.sampled_from((None,) * 16 + (0, 1, 2, 3, 4, 5, 6, 8)),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.lists(commands, min_size=1, max_size=25))
def test_invariants_hold_over_random_event_sequences(
    data: st.DataObject, script: list[tuple[str, list[DesiredRole], int | None]]
) -> None:
    device = Device(data)
    last: list[DesiredRole] = []
    for command, desired, cut_at in script:
        device.cut_at, device.done = cut_at, 0
        try:
            match command:
                case "poll":
                    device.poll(desired)
                    last = desired
                case "repeat":
                    device.poll(last)
                case "reconfigure":  # new configuration: each running role's .env changed
                    device.poll(last, reconfigure=True)
                case "operator-enter":
                    device.drive(OperatorEntered("bench"))
                case "operator-leave":
                    device.drive(OperatorLeft())
                case "overlord-on" | "overlord-off":
                    device.drive(OverlordWants(command == "overlord-on"))
                case "crash":  # the running containers die; the next poll finds out
                    device.running.clear()
                case "stack-failed":
                    device.drive(SafeModeStackFailed("safe-mode image missing"))
        except PowerCut:
            device.power_cut()
        check_device(device)


@settings(max_examples=50, deadline=None)
@given(st.data(), st.integers(1, 8))
def test_a_crash_loop_trips_safe_mode_once_after_n_failures(
    data: st.DataObject, polls: int
) -> None:
    """1.0.0 runs, then dies on every start: each poll is one failure; the Nth trips safe mode
    and stops the role; later polls leave it alone."""
    device = Device(data, starts_pass=True)
    role = [DesiredRole(name="webapp", version=VERSIONS[0], target="roles/webapp/1.0.0")]
    device.poll(role)
    device.starts_pass = False
    for _ in range(polls):
        device.running.clear()
        device.poll(role)
        check_device(device)
    kinds = [e.kind.value for e in device.events]
    failed = min(polls, RULES.safe_mode_after)
    assert kinds.count("role-failed") == failed
    assert kinds.count("safe-mode-entered") == (polls >= RULES.safe_mode_after)
    safe = device.state.safe_mode
    assert safe.tripped_by("webapp") is (polls >= RULES.safe_mode_after)
