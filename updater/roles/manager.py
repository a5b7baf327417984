"""The device role manager, the runner around :mod:`updater.roles.decide`.

The updater's main loop calls :meth:`RoleManager.apply` with the Overlord's desired roles and a
``fetch`` callable that returns a TUF-verified bundle archive, and :meth:`RoleManager.status`
for heartbeats. The manager observes (what each role's links name, the outcome of a fetch and
staging, of a ``compose up`` and its health gate, of a health check), hands each observation to
:func:`~updater.roles.decide.decide`, and carries out the actions it returns against the file
system, compose and the engine, in order; every rule lives in ``decide``. Outcomes of one role
apply:

- the desired version passes the health gate: ``ROLE_APPLIED``; a safe mode that this role
  tripped is left;
- it fails and ``previous`` passes: ``ROLE_FAILED`` then ``ROLE_ROLLBACK``; the version is
  marked bad and not retried (a bad release is fixed by publishing a newer one);
- the running version's ``.env``, rendered with the configuration ``apply`` was given (the
  Overlord's variables, template context ``vars``), differs from the one it runs with: it is
  restarted with the new one (``ROLE_APPLIED``, naming the changed variables); a role whose
  ``.env`` does not change is left alone;
- nothing of the role runs healthy (no previous, the rollback failed or was refused, or the
  running version crash-loops): a *failure*. ``safe_mode_after`` consecutive failures stop the
  role and start the safe-mode stack; a healthy apply of another version leaves safe mode.

Anti-rollback holds for every start, not only for fetched versions: a version is never started
(installed, re-selected from disk, rolled back to, restarted, or restarted when safe mode
ends) if it is marked bad, lower than the highest version that passed the health gate here, or
below the highest version floor that signed metadata declared for the role.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fleetcore import redact
from fleetcore.errors import FleetError
from fleetcore.rolebundle.bundle import Bundle, load_bundle
from fleetcore.rolebundle.errors import BundleError, MissingValue
from fleetcore.rolebundle.spec import APPLYING_FILE, ENV_FILE, SAFE_MODE_ROLE
from fleetcore.version import Version
from fleetcore.wire import DesiredRole, Health, RoleStatus
from updater.roles import health, imagegc, runtime
from updater.roles.archive import MAX_BUNDLE_BYTES, MAX_IMAGE_BYTES, extract
from updater.roles.compose import Compose, ComposeFlavor, Project, detect
from updater.roles.decide import (
    Action,
    AppliedByHand,
    Assigned,
    Check,
    Checked,
    Checkpoint,
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
    Probe,
    Prune,
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
    valid_name,
)
from updater.roles.errors import (
    EngineError,
    HealthGateFailed,
    NoSpace,
    RoleError,
    StateError,
)
from updater.roles.layout import Checkpoint as CheckpointHook
from updater.roles.layout import (
    RoleLayout,
    begin_staging,
    discard_stages,
    no_checkpoint,
    point,
    prune,
    publish_staging,
    swap,
)
from updater.roles.state import (
    STATE_FILE,
    ManagerState,
    load_or_reset,
    load_state,
    save_state,
)
from updater.roles.statuspage import PageData, write_page

__all__ = [
    "FetchedBundle",
    "ManagerConfig",
    "RoleEvent",
    "RoleManager",
    "RoleOutcome",
]

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# Names listed in a reconfiguration's event, at most.
_MAX_NAMES = 10
STATUS_PAGE_STATE = "www"
# compose may have to pull images before it can start anything; the gate deadline runs after.
_UP_SLACK_S = 600
STAGING_RESERVE_BYTES = 128 * 1024 * 1024
# A staged archive takes about this many times its compressed size (zstd 19 on compose files
# and docker-save layers); the extraction's own caps bound the estimate from above.
STAGING_FACTOR = 4


class ManagerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str = Field(min_length=1)
    root: Path = Path("/data/roles")
    safe_mode_bundle: Path = Path("/opt/metrica-fleet/safe-mode")
    role_config_dir: Path = Path("/data/fleet/roles")
    safe_mode_after: int = Field(default=3, ge=1, le=20)
    compose: ComposeFlavor = ComposeFlavor.AUTO
    # compose v2 wants project names to start with a lowercase letter or digit
    project_prefix: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9_-]{0,29})?$")
    max_bundle_bytes: int = Field(default=MAX_BUNDLE_BYTES, gt=0)
    max_image_bytes: int = Field(default=MAX_IMAGE_BYTES, ge=0)
    poll_s: float = Field(default=0.5, gt=0, le=10)
    # Left free on the data partition after staging: the updater's state and event queue, the
    # roles' own state, and docker's image loads all live there too.
    reserve_bytes: int = Field(default=STAGING_RESERVE_BYTES, ge=0)


@dataclass(frozen=True)
class FetchedBundle:
    """What ``fetch`` returns: the verified archive (or folder) and the version floor that the
    target's signed metadata declares for the role, which the manager keeps from then on."""

    archive: Path
    floor: Version | None = None


Fetch = Callable[[DesiredRole], FetchedBundle]
EventSink = Callable[[RoleEvent], None]


def _ignore_event(event: RoleEvent) -> None:
    log.info("%s %s %s: %s", event.kind.value, event.role, event.version, event.message)


def _now() -> datetime:
    return datetime.now(UTC)


def _nothing_fetches(role: DesiredRole) -> FetchedBundle:
    """Resume and safe-mode flows never install; a decision asking for it is a defect."""
    raise RoleError(f"{role.name} {role.version} is not staged and nothing fetches it")


@dataclass
class _Session:
    """One locked run: the state as the decisions left it, and the fetch of this apply."""

    state: ManagerState
    fetch: Fetch = _nothing_fetches


class RoleManager:
    def __init__(
        self,
        config: ManagerConfig,
        *,
        on_event: EventSink = _ignore_event,
        compose: Compose | None = None,
        inspector: health.EngineView | None = None,
        checkpoint: CheckpointHook = no_checkpoint,
    ) -> None:
        self.config = config
        self.on_event = on_event
        self._compose = compose
        self.inspector = inspector or health.Inspector()
        self.checkpoint = checkpoint
        # The Overlord's configuration variables (template context ``vars``), once an apply
        # brought them; until then (an agent just started, offline) each role keeps the
        # .env it was last started with, since secret values are kept nowhere else.
        self.variables: dict[str, str] | None = None
        # Roles the last apply could not give the configuration (why, secrets masked).
        self.unconfigured: dict[str, str] = {}

    # ----------------------------------------------------------------- public API

    def apply(
        self,
        desired: Sequence[DesiredRole],
        fetch: Fetch,
        *,
        variables: Mapping[str, str] | None = None,
    ) -> dict[str, RoleOutcome]:
        """Converge the device's roles on ``desired``; roles not listed are stopped.

        ``variables`` (the desired state's configuration) become the templates' ``vars``
        from now on: a running role whose ``.env`` renders differently with them is restarted
        with the new one; one whose ``.env`` does not change is left alone.

        While the Docker engine does not answer, nothing is attempted or counted: an engine
        outage is not a role failure and must not lead to safe mode.
        """
        outcomes: dict[str, RoleOutcome] = {}
        if variables is not None:
            self.variables = dict(variables)
        self.unconfigured = {}
        if not self.inspector.available():
            log.error("docker engine is not answering; roles left as they are")
            return {role.name: RoleOutcome.SKIPPED for role in desired}
        with self._locked() as session:
            session.fetch = fetch
            for role in desired:
                current = self._current(role.name) if valid_name(role.name) else None
                changed = self._reconfigure(role, current)
                outcomes[role.name] = self._drive(session, Assigned(role, current, changed))
            wanted = {role.name for role in desired}
            for name in self._installed():
                if name not in wanted:
                    self._drive(session, Unassigned(name))
            self._refresh_page(session.state)
        return outcomes

    def apply_local(self, source: Path) -> RoleOutcome:
        """Apply a bundle folder or archive by hand (``fleet-updater roles apply``)."""
        if source.is_dir():
            spec = load_bundle(source).spec
        else:
            with _scratch(self.config.root) as scratch:
                self._extract(source, scratch)
                spec = load_bundle(scratch).spec
        desired = DesiredRole(name=spec.name, version=spec.version, target=str(source))
        with self._locked() as session:
            session.fetch = lambda _role: FetchedBundle(source)
            outcome = self._drive(session, AppliedByHand(desired, self._current(spec.name)))
            self._refresh_page(session.state)
        return outcome

    def resume(self) -> None:
        """At agent start: finish or undo an interrupted swap, and start every role."""
        if not self.inspector.available():
            raise EngineError("docker engine is not answering", hint="systemctl status docker")
        with self._locked() as session:
            for name in self._installed():
                self._drive(session, Resumed(name, self._current(name)))
            self._drive(session, ResumeDone())
            self._refresh_page(session.state)

    def status(self) -> list[RoleStatus]:
        """Role versions and health for the heartbeat (and the safe-mode status page)."""
        try:
            state = load_state(self._state_path)
        except StateError:
            state = ManagerState()  # the next apply() sets the corrupt file aside
        safe = state.safe_mode
        statuses = []
        for name in self._installed():
            layout = self._layout(name)
            version = layout.current_version()
            health_now = Health.UNHEALTHY if safe.tripped_by(name) else self._health(layout)
            statuses.append(
                RoleStatus(name=name, version=version, health=health_now, safe_mode=safe.active)
            )
        if safe.active:
            layout = self._layout(SAFE_MODE_ROLE)
            statuses.append(
                RoleStatus(
                    name=SAFE_MODE_ROLE,
                    version=layout.current_version(),
                    health=self._health(layout),
                    safe_mode=True,
                )
            )
            self._write_page(state, statuses)
        return statuses

    def installed_version(self, name: str) -> Version | None:
        """The version ``current`` names for role ``name``, if any."""
        return self._current(name)

    def enter_safe_mode(self, reason: str) -> None:
        """On demand (operator): stop every role and start the safe-mode stack."""
        with self._locked() as session:
            self._drive(session, OperatorEntered(reason))

    def leave_safe_mode(self) -> None:
        """Stop the safe-mode stack and start the roles again."""
        with self._locked() as session:
            self._drive(session, OperatorLeft())

    def follow_desired_safe_mode(self, wanted: bool) -> None:
        """Apply ``DesiredState.safe_mode`` on every poll.

        The Overlord's request behaves like an operator's, but the Overlord only ends a safe
        mode it asked for itself: an operator's or one tripped by failures stays.
        """
        with self._locked() as session:
            self._drive(session, OverlordWants(wanted))

    # ----------------------------------------------------------------- the runner

    def _drive(self, session: _Session, observation: Observation) -> RoleOutcome:
        """Decide on ``observation``, carry out the actions, answer each probe, until an
        outcome is reached."""
        while True:
            decision = self._decide(session, observation)
            for action in decision.actions:
                self._carry_out(session, action)
            if isinstance(decision.result, RoleOutcome):
                return decision.result
            observation = self._answer(session, decision.result)

    def _decide(self, session: _Session, observation: Observation) -> Decision:
        rules = Rules(now=_now(), safe_mode_after=self.config.safe_mode_after)
        decision = decide(session.state, observation, rules)
        session.state = decision.state
        return decision

    def _carry_out(self, session: _Session, action: Action) -> None:
        match action:
            case Emit(event=event):
                self.on_event(event)
            case Save():
                self._save(session.state)
            case Checkpoint(name=name):
                self.checkpoint(name)
            case Swap(role=role, version=version):
                swap(self._layout(role), version, self.checkpoint)
            case PointCurrent(role=role, version=version):
                point(self._layout(role).current, str(version))
            case Stop(role=role, version=version):
                self._stop(self._layout(role), version)
            case StopCurrent(role=role):
                self._stop_current(role)
            case StopAllRoles():
                for name in self._installed():
                    self._stop_current(name)
            case Prune(role=role):
                self._prune(self._layout(role))
            case Delete(role=role):
                self._delete(role)
            case StartSafeModeStack():
                self._start_safe_mode(session)
            case StopSafeModeStack():
                self._stop_current(SAFE_MODE_ROLE)
            case KeepAllRunning():
                for name in self._installed():
                    self._drive(session, KeepRunning(name, self._current(name)))

    def _answer(self, session: _Session, probe: Probe) -> Observation:
        match probe:
            case Install(desired=desired):
                return self._install(session, desired)
            case Start(role=role, version=version, purpose=purpose, cause=cause):
                layout = self._layout(role)
                try:
                    self._start(layout, version)
                except (HealthGateFailed, EngineError, BundleError) as err:
                    previous = layout.previous_version()
                    return Started(role, version, purpose, _said(err), previous, cause)
                return Started(role, version, purpose, None, cause=cause)
            case Refuse(role=role, version=version, purpose=purpose, error=error, cause=cause):
                previous = self._layout(role).previous_version()
                return Started(role, version, purpose, error, previous, cause)
            case Check(role=role, version=version):
                return Checked(role, version, healthy=self._running_healthy(role, version))

    def _install(self, session: _Session, desired: DesiredRole) -> Observation:
        """Stage ``desired`` from disk or the fetch, and make its images present."""
        name, version = desired.name, desired.version
        layout = self._layout(name)
        try:
            if layout.has_version(version):
                _check_startable(session.state, name, version)
                bundle = load_bundle(layout.version_dir(version), staged=True)
                self._write_runtime_files(layout, layout.version_dir(version), bundle)
            else:
                fetched = session.fetch(desired)
                self._drive(session, Fetched(name, version, fetched.floor))
                _check_startable(session.state, name, version)
                bundle = self.stage(name, fetched.archive, version)
            self.checkpoint("staged")
            runtime.check_devices(bundle)
            runtime.ensure_images(bundle)
        except MissingValue as err:  # the device's configuration, not the bundle, is at fault
            return StageFailed(name, version, _said(err), rejected=False)
        except BundleError as err:
            return StageFailed(name, version, _said(err), rejected=True)
        except FleetError as err:
            return StageFailed(name, version, _said(err), rejected=False)
        return Staged(name, version)

    def _reconfigure(self, desired: DesiredRole, current: Version | None) -> str | None:
        """What changed in the running version's ``.env`` with the configuration now, if
        anything (names only); None also when it cannot be rendered (the role keeps running
        what it has, and is listed in :attr:`unconfigured`)."""
        if self.variables is None or current is None or current != desired.version:
            return None
        layout = self._layout(desired.name)
        directory = layout.version_dir(current)
        if (directory / APPLYING_FILE).exists():
            return "a restart with new configuration was cut short"
        try:
            bundle = load_bundle(directory, staged=True)
            wanted = self._env(layout, directory, bundle)
        except (FleetError, OSError) as err:
            said = _said(err)
            log.error("role %s %s keeps its configuration: %s", desired.name, current, said)
            self.unconfigured[desired.name] = said
            return None
        try:
            running = (directory / ENV_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            running = ""
        names = runtime.changed_names(running, wanted)
        if not names:
            return None
        more = f" and {len(names) - _MAX_NAMES} more" if len(names) > _MAX_NAMES else ""
        return f"{', '.join(names[:_MAX_NAMES])}{more} changed"

    def _running_healthy(self, role: str, version: Version) -> bool:
        """Judge the running containers, waiting for ones still starting; no restart."""
        layout = self._layout(role)
        try:
            bundle = load_bundle(layout.version_dir(version), staged=True)
            project = self._project(layout, version, bundle)
            containers = self.inspector.containers(project.name)
            verdict = health.judge(containers, bundle.services, strict=False)
            if verdict.phase is health.Phase.WAITING and containers:
                health.wait_healthy(
                    self.inspector,
                    project.name,
                    bundle.services,
                    timeout_s=bundle.spec.health.timeout_s,
                    strict=False,
                    poll_s=self.config.poll_s,
                )
            elif verdict.phase is not health.Phase.HEALTHY:
                raise HealthGateFailed(verdict.reason)
        except (HealthGateFailed, EngineError, BundleError) as err:
            log.warning("role %s %s is not healthy (%s); restarting it", role, version, err)
            return False
        return True

    def _prune(self, layout: RoleLayout) -> None:
        """Drop the versions neither link names, and the engine images only they carried."""
        carried = imagegc.carried(self.config.root)
        prune(layout)
        self._collect_images(carried)

    def _collect_images(self, carried: set[str]) -> None:
        imagegc.collect(
            carried, root=self.config.root, safe_mode_bundle=self.config.safe_mode_bundle
        )

    def _delete(self, name: str) -> None:
        """A role no longer assigned (and stopped): drop its versions, keep its state/ data."""
        layout = self._layout(name)
        carried = imagegc.carried(self.config.root)
        for entry in layout.dir.iterdir():
            if entry.name == "state":
                continue
            if entry.is_symlink() or entry.is_file():
                entry.unlink()
            else:
                shutil.rmtree(entry)
        self._collect_images(carried)
        log.info("role %s removed; its state directory is kept", name)

    # ----------------------------------------------------------------- safe mode

    def _start_safe_mode(self, session: _Session) -> None:
        """Stage the safe-mode stack from the OS image if needed, write the page, start it."""
        layout = self._layout(SAFE_MODE_ROLE)
        try:
            spec = load_bundle(self.config.safe_mode_bundle).spec
            if not layout.has_version(spec.version):
                self.stage(SAFE_MODE_ROLE, self.config.safe_mode_bundle, spec.version)
            swap(layout, spec.version)
            self._refresh_page(session.state)
            self._start(layout, spec.version)
        except (FleetError, OSError) as err:
            log.error("safe-mode stack did not start: %s", err)
            self._drive(session, SafeModeStackFailed(str(err)))

    def _refresh_page(self, state: ManagerState) -> None:
        if state.safe_mode.active:
            statuses = [
                RoleStatus(
                    name=name,
                    version=self._layout(name).current_version(),
                    health=Health.UNKNOWN,
                    safe_mode=True,
                )
                for name in self._installed()
            ]
            self._write_page(state, statuses)

    def _write_page(self, state: ManagerState, statuses: list[RoleStatus]) -> None:
        errors = [
            (name, record.last_error)
            for name, record in sorted(state.roles.items())
            if record.last_error
        ]
        page = PageData(
            device_id=self.config.device_id,
            generated=_now(),
            safe_mode=state.safe_mode.active,
            reason=state.safe_mode.reason,
            roles=statuses,
            errors=errors,
        )
        write_page(self._layout(SAFE_MODE_ROLE).state_dir / STATUS_PAGE_STATE, page)

    # ----------------------------------------------------------------- plumbing

    @property
    def compose(self) -> Compose:
        if self._compose is None:
            self._compose = detect(self.config.compose)
        return self._compose

    @property
    def _state_path(self) -> Path:
        return self.config.root / STATE_FILE

    def _layout(self, name: str) -> RoleLayout:
        return RoleLayout(self.config.root, name)

    def _installed(self) -> list[str]:
        """Roles with a ``current`` link, safe mode excluded, in name order."""
        if not self.config.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.config.root.iterdir()
            if entry.name != SAFE_MODE_ROLE
            and valid_name(entry.name)
            and (entry / "current").is_symlink()
        )

    def _current(self, name: str) -> Version | None:
        return self._layout(name).current_version()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Session]:
        self.config.root.mkdir(parents=True, exist_ok=True)
        with (self.config.root / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            session = _Session(load_or_reset(self._state_path))
            yield session
            self._save(session.state)

    def _save(self, state: ManagerState) -> None:
        save_state(self._state_path, state)

    def stage(self, name: str, source: Path, version: Version) -> Bundle:
        """Unpack (archive) or copy (folder) ``source`` into ``<root>/<name>/<version>/``.

        The bundle is validated, its ``.env`` and limits override written, and compose asked to
        parse it, all before the version directory appears; nothing runs and no link changes.
        """
        layout = self._layout(name)
        discard_stages(self.config.root)
        layout.dir.mkdir(parents=True, exist_ok=True)
        self._check_space(layout.dir, source, f"{name} {version}")
        staging = begin_staging(layout, version)
        try:
            if source.is_dir():
                shutil.copytree(source, staging, symlinks=True, dirs_exist_ok=True)
            else:
                self._extract(source, staging)
            bundle = load_bundle(staging)
            if bundle.spec.name != layout.name or bundle.spec.version != version:
                raise BundleError(
                    f"bundle is {bundle.spec.name} {bundle.spec.version}, "
                    f"expected {layout.name} {version}"
                )
            self._write_runtime_files(layout, staging, bundle)
            self.compose.check(self._project(layout, version, bundle, directory=staging))
            final = publish_staging(layout, staging, version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Bundle(path=final, spec=bundle.spec, compose=bundle.compose)

    def _check_space(self, where: Path, source: Path, what: str) -> None:
        """Refuse to stage unless the estimate plus the reserve fits on the partition."""
        if source.is_dir():
            size = sum(p.lstat().st_size for p in source.rglob("*"))
        else:
            size = source.stat().st_size * STAGING_FACTOR
        size = min(size, self.config.max_bundle_bytes + self.config.max_image_bytes)
        need = size + self.config.reserve_bytes
        usage = os.statvfs(where)
        free = usage.f_bavail * usage.f_frsize
        if free < need:
            mib = 1024 * 1024
            raise NoSpace(
                f"not enough free space to stage {what}: need {need // mib} MiB "
                f"(bundle estimate and a {self.config.reserve_bytes // mib} MiB reserve), "
                f"{free // mib} MiB free on {where}",
                hint="free space on the data partition; the bundle is retried, not marked bad",
            )

    def _extract(self, archive: Path, dest: Path) -> None:
        extract(
            archive,
            dest,
            max_bytes=self.config.max_bundle_bytes,
            max_image_bytes=self.config.max_image_bytes,
        )

    def _env(self, layout: RoleLayout, directory: Path, bundle: Bundle) -> str:
        return runtime.render_env(
            directory,
            bundle,
            state_dir=layout.state_dir,
            device_id=self.config.device_id,
            config=runtime.load_role_config(self.config.role_config_dir, layout.name),
            variables=self.variables or {},
        )

    def _write_runtime_files(self, layout: RoleLayout, directory: Path, bundle: Bundle) -> None:
        runtime.write_runtime_files(directory, bundle, env=self._env(layout, directory, bundle))

    def _project(
        self,
        layout: RoleLayout,
        version: Version,
        bundle: Bundle,
        *,
        directory: Path | None = None,
    ) -> Project:
        return Project(
            name=f"{self.config.project_prefix}{layout.name}",
            directory=directory or layout.version_dir(version),
            compose_file=bundle.spec.compose,
        )

    def _start(self, layout: RoleLayout, version: Version) -> None:
        """``compose up`` the version ``current`` names and wait for its health gate.

        With the Overlord's configuration known, its ``.env`` is rendered afresh first, so a
        restart or a rollback runs with the configuration of now, not of when it was staged.
        Anti-rollback was decided before (``decide`` refuses, or asks for this start).
        """
        directory = layout.version_dir(version)
        bundle = load_bundle(directory, staged=True)
        for name in bundle.spec.state:
            (layout.state_dir / name).mkdir(parents=True, exist_ok=True)
        runtime.check_state_binds(bundle.compose, layout.state_dir)
        project = self._project(layout, version, bundle)
        timeout = bundle.spec.health.timeout_s
        self.checkpoint("compose-up")
        runtime.ensure_images(bundle)  # a rollback's image may have been removed meanwhile
        applying = directory / APPLYING_FILE
        try:
            if self.variables is not None:
                applying.touch()
                self._write_runtime_files(layout, directory, bundle)
            self.compose.up(project, timeout_s=timeout + _UP_SLACK_S, wait_s=timeout, recreate=True)
        except EngineError as err:
            raise self._explain_up_failure(project, bundle, timeout, err) from err
        finally:
            applying.unlink(missing_ok=True)
        health.wait_healthy(
            self.inspector,
            project.name,
            bundle.services,
            timeout_s=timeout,
            poll_s=self.config.poll_s,
        )

    def _explain_up_failure(
        self, project: Project, bundle: Bundle, timeout_s: float, err: EngineError
    ) -> RoleError:
        """The gate's verdict on a failed ``up``: v2's ``--wait`` fails on health too.

        A container that exited, restarts or is unhealthy (or, after a waiting ``up``, is still
        starting) is a failed health gate with the gate's own reason, the same one v1 gives;
        anything else stays the engine error compose reported.
        """
        containers = self.inspector.containers(project.name)
        verdict = health.judge(containers, bundle.services)
        if verdict.phase is health.Phase.FAILED:
            return HealthGateFailed(verdict.reason)
        if verdict.phase is health.Phase.WAITING and containers and self.compose.waits:
            return HealthGateFailed(f"not healthy after {timeout_s:g} s: {verdict.reason}")
        return err

    def _stop_current(self, name: str) -> None:
        layout = self._layout(name)
        current = layout.current_version()
        if current is not None:
            self._stop(layout, current)

    def _stop(self, layout: RoleLayout, version: Version) -> None:
        try:
            bundle = load_bundle(layout.version_dir(version), staged=True)
            self.compose.down(self._project(layout, version, bundle))
        except (EngineError, BundleError) as err:
            log.error("cannot stop role %s %s: %s", layout.name, version, err)

    def _health(self, layout: RoleLayout) -> Health:
        version = layout.current_version()
        if version is None:
            return Health.UNKNOWN
        try:
            bundle = load_bundle(layout.version_dir(version), staged=True)
            project = self._project(layout, version, bundle)
            return health.summarize(self.inspector.containers(project.name), bundle.services)
        except (EngineError, BundleError):
            return Health.UNKNOWN


def _said(err: BaseException) -> str:
    """An error's text for the state file, the events and the status page: a compose or
    template error may quote a rendered value, and secret ones are masked."""
    return redact.SECRETS.mask(str(err))


def _check_startable(state: ManagerState, name: str, version: Version) -> None:
    refused = refusal(state.roles.get(name), version)
    if refused is not None:
        raise refused


@contextlib.contextmanager
def _scratch(root: Path) -> Iterator[Path]:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=root) as tmp:
        yield Path(tmp)
