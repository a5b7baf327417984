"""The device role manager: stage, swap, start, health-gate, roll back, and safe mode.

The updater's main loop calls :meth:`RoleManager.apply` with the Overlord's desired roles and a
``fetch`` callable that returns a TUF-verified bundle archive, and :meth:`RoleManager.status`
for heartbeats. Outcomes of one role apply:

- the desired version passes the health gate: ``ROLE_APPLIED``; a safe mode that this role
  tripped is left;
- it fails and ``previous`` passes: ``ROLE_FAILED`` then ``ROLE_ROLLBACK``; the version is
  marked bad and not retried (a bad release is fixed by publishing a newer one);
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
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fleetcore.errors import FleetError
from fleetcore.version import Version
from fleetcore.wire import DesiredRole, EventKind, Health, RoleStatus
from signing.errors import DowngradeRefused
from signing.rollback import check_upgrade, raise_floor
from updater.roles import health, imagegc, runtime
from updater.roles.archive import MAX_BUNDLE_BYTES, MAX_IMAGE_BYTES, extract
from updater.roles.bundle import Bundle, load_bundle
from updater.roles.compose import Compose, ComposeFlavor, Project, detect
from updater.roles.errors import (
    BundleError,
    EngineError,
    HealthGateFailed,
    NoSpace,
    RoleError,
    StateError,
    TargetRefused,
)
from updater.roles.layout import (
    Checkpoint,
    RoleLayout,
    begin_staging,
    discard_stages,
    no_checkpoint,
    point,
    prune,
    publish_staging,
    swap,
)
from updater.roles.policy import check_state_binds
from updater.roles.spec import (
    ROLE_NAME_RE,
    SAFE_MODE_ROLE,
)
from updater.roles.state import (
    STATE_FILE,
    ManagerState,
    RoleRecord,
    SafeModeRecord,
    load_or_reset,
    load_state,
    save_state,
)
from updater.roles.statuspage import PageData, write_page

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
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


class Outcome(StrEnum):
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


class RoleManager:
    def __init__(
        self,
        config: ManagerConfig,
        *,
        on_event: EventSink = _ignore_event,
        compose: Compose | None = None,
        inspector: health.Inspector | None = None,
        checkpoint: Checkpoint = no_checkpoint,
    ) -> None:
        self.config = config
        self.on_event = on_event
        self._compose = compose
        self.inspector = inspector or health.Inspector()
        self.checkpoint = checkpoint

    # ----------------------------------------------------------------- public API

    def apply(self, desired: Sequence[DesiredRole], fetch: Fetch) -> dict[str, Outcome]:
        """Converge the device's roles on ``desired``; roles not listed are stopped.

        While the Docker engine does not answer, nothing is attempted or counted: an engine
        outage is not a role failure and must not lead to safe mode.
        """
        outcomes: dict[str, Outcome] = {}
        if not self.inspector.available():
            log.error("docker engine is not answering; roles left as they are")
            return {role.name: Outcome.SKIPPED for role in desired}
        with self._locked() as state:
            for role in desired:
                if role.name == SAFE_MODE_ROLE or not _valid_name(role.name):
                    self._emit(EventKind.ROLE_FAILED, role.name, role.version, "invalid role name")
                    outcomes[role.name] = Outcome.FAILED
                    continue
                outcomes[role.name] = self._apply_role(state, role, fetch)
            wanted = {role.name for role in desired}
            for name in self._installed():
                if name not in wanted:
                    self._remove(state, name)
            self._refresh_page(state)
        return outcomes

    def apply_local(self, source: Path) -> Outcome:
        """Apply a bundle folder or archive by hand (``fleet-updater roles apply``)."""
        if source.is_dir():
            spec = load_bundle(source).spec
        else:
            with _scratch(self.config.root) as scratch:
                self._extract(source, scratch)
                spec = load_bundle(scratch).spec
        desired = DesiredRole(name=spec.name, version=spec.version, target=str(source))
        with self._locked() as state:
            record = state.role(spec.name)
            if spec.version in record.bad_versions:
                record.bad_versions.remove(spec.version)
            outcome = self._apply_role(state, desired, lambda _role: FetchedBundle(source))
            self._refresh_page(state)
        return outcome

    def resume(self) -> None:
        """At agent start: finish or undo an interrupted swap, and start every role."""
        if not self.inspector.available():
            raise EngineError("docker engine is not answering", hint="systemctl status docker")
        with self._locked() as state:
            for name in self._installed():
                layout = self._layout(name)
                record = state.role(name)
                current = layout.current_version()
                safe = state.safe_mode
                if current is None or (safe.active and (safe.manual or safe.role == name)):
                    continue
                if record.pending is not None and record.pending == current:
                    self._activate(state, layout, current)
                else:
                    record.pending = None
                    self._keep_running(state, layout)
            if state.safe_mode.active:
                self._start_safe_mode(state)
            self._refresh_page(state)

    def status(self) -> list[RoleStatus]:
        """Role versions and health for the heartbeat (and the safe-mode status page)."""
        try:
            state = load_state(self._state_path)
        except StateError:
            state = ManagerState()  # the next apply() sets the corrupt file aside
        statuses = []
        for name in self._installed():
            layout = self._layout(name)
            version = layout.current_version()
            tripped = state.safe_mode.active and state.safe_mode.role == name
            health_now = Health.UNHEALTHY if tripped else self._health(layout)
            statuses.append(
                RoleStatus(
                    name=name, version=version, health=health_now, safe_mode=state.safe_mode.active
                )
            )
        if state.safe_mode.active:
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
        return self._layout(name).current_version()

    def enter_safe_mode(self, reason: str) -> None:
        """On demand (operator): stop every role and start the safe-mode stack."""
        with self._locked() as state:
            self._enter(state, reason=reason, manual=True)

    def leave_safe_mode(self) -> None:
        """Stop the safe-mode stack and start the roles again."""
        with self._locked() as state:
            if state.safe_mode.active:
                self._leave_and_restart(state)

    def follow_desired_safe_mode(self, wanted: bool) -> None:
        """Apply ``DesiredState.safe_mode`` on every poll.

        The Overlord's request behaves like an operator's, but the Overlord only ends a safe
        mode it asked for itself: an operator's or one tripped by failures stays.
        """
        with self._locked() as state:
            safe = state.safe_mode
            if wanted and not (safe.active and safe.manual):
                self._enter(
                    state, reason="requested by the Overlord", manual=True, by_overlord=True
                )
            elif not wanted and safe.active and safe.by_overlord:
                self._leave_and_restart(state)

    # ----------------------------------------------------------------- one role

    def _apply_role(self, state: ManagerState, desired: DesiredRole, fetch: Fetch) -> Outcome:
        name, version = desired.name, desired.version
        record = state.role(name)
        safe = state.safe_mode
        if safe.active and safe.manual:
            return Outcome.SKIPPED
        layout = self._layout(name)
        tripped = safe.active and safe.role == name
        current = layout.current_version()
        if current == version and record.pending is None:
            return Outcome.SKIPPED if tripped else self._keep_running(state, layout)
        if version in record.bad_versions or (tripped and safe.version == version):
            if current is None or tripped:
                return Outcome.SKIPPED
            return self._keep_running(state, layout)
        return self._install(state, layout, desired, fetch)

    def _install(
        self, state: ManagerState, layout: RoleLayout, desired: DesiredRole, fetch: Fetch
    ) -> Outcome:
        name, version = desired.name, desired.version
        record = state.role(name)
        try:
            if layout.has_version(version):
                _check_startable(record, version)
                bundle = load_bundle(layout.version_dir(version), staged=True)
                self._write_runtime_files(layout, layout.version_dir(version), bundle)
            else:
                fetched = fetch(desired)
                record.floor = raise_floor(record.floor, fetched.floor)
                _check_startable(record, version)
                bundle = self.stage(name, fetched.archive, version)
            self.checkpoint("staged")
            runtime.check_devices(bundle)
            runtime.ensure_images(bundle)
        except BundleError as err:
            record.mark_bad(version)
            self._record_error(state, name, f"{version}: {err}")
            self._emit(EventKind.ROLE_FAILED, name, version, "bundle rejected", str(err))
            return Outcome.FAILED
        except FleetError as err:
            self._record_error(state, name, f"{version}: {err}")
            self._emit(EventKind.ROLE_FAILED, name, version, "cannot stage bundle", str(err))
            return Outcome.FAILED
        record.pending = version
        self._save(state)
        self.checkpoint("pending")
        swap(layout, version, self.checkpoint)
        return self._activate(state, layout, version)

    def _activate(self, state: ManagerState, layout: RoleLayout, version: Version) -> Outcome:
        """``current`` names ``version``: start it; on failure roll back to ``previous``."""
        name = layout.name
        record = state.role(name)
        try:
            self._start(state, layout, version)
        except (HealthGateFailed, EngineError, BundleError) as err:
            record.pending = None
            self._emit(EventKind.ROLE_FAILED, name, version, "health gate failed", str(err))
            self._record_error(state, name, f"{version}: {err}")
            previous = layout.previous_version()
            if previous == version:
                previous = None
            if previous is not None and (refused := _refusal(record, previous)) is not None:
                self._emit(EventKind.ROLE_FAILED, name, previous, "rollback refused", str(refused))
                previous = None
            if previous is None:
                self._stop(layout, version)
                self._count_failure(state, name, version, err)
                return Outcome.FAILED
            record.mark_bad(version)
            record.rolling_back = version
            self._stop(layout, version)
            point(layout.current, str(previous))
            self._save(state)
            self.checkpoint("rolled-back")
            return self._roll_back(state, layout, version, previous, err)
        record.pending = None
        record.rolling_back = None
        record.failures = 0
        record.confirm(version)
        self._prune(layout)
        self._emit(EventKind.ROLE_APPLIED, name, version, f"{name} {version} is healthy")
        if state.safe_mode.active and not state.safe_mode.manual and state.safe_mode.role == name:
            self._leave(state)
        self._save(state)
        return Outcome.APPLIED

    def _roll_back(
        self,
        state: ManagerState,
        layout: RoleLayout,
        failed: Version,
        previous: Version,
        cause: RoleError,
    ) -> Outcome:
        name = layout.name
        try:
            self._start(state, layout, previous)
        except (HealthGateFailed, EngineError, BundleError) as err:
            state.role(name).rolling_back = None
            self._emit(EventKind.ROLE_FAILED, name, previous, "rollback failed", str(err))
            self._record_error(state, name, f"{previous}: {err}")
            self._stop(layout, previous)
            self._count_failure(state, name, previous, err)
            return Outcome.FAILED
        state.role(name).failures = 0
        self._report_rollback(state, layout, previous, str(cause))
        return Outcome.ROLLED_BACK

    def _report_rollback(
        self, state: ManagerState, layout: RoleLayout, running: Version, cause: str | None
    ) -> None:
        """``running`` replaced ``rolling_back`` and runs healthy: say so, once. The flag is
        saved with the swap back, so a power cut before this point reports it at the next start
        (queued before the flag is cleared: at least once)."""
        record = state.role(layout.name)
        failed, record.rolling_back = record.rolling_back, None
        self._emit(
            EventKind.ROLE_ROLLBACK,
            layout.name,
            running,
            f"{layout.name} rolled back from {failed} to {running}",
            cause,
        )
        self._save(state)

    def _keep_running(self, state: ManagerState, layout: RoleLayout) -> Outcome:
        """The role is where it should be: check it runs, restart it once if it does not."""
        version = layout.current_version()
        if version is None:
            return Outcome.SKIPPED
        record = state.role(layout.name)
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
            log.warning("role %s %s is not healthy (%s); restarting it", layout.name, version, err)
        else:
            if record.rolling_back is not None:
                self._report_rollback(state, layout, version, record.last_error)
            if record.failures:
                record.failures = 0
                self._save(state)
            return Outcome.UNCHANGED
        try:
            self._start(state, layout, version)
        except (HealthGateFailed, EngineError, BundleError) as err:
            self._emit(EventKind.ROLE_FAILED, layout.name, version, "restart failed", str(err))
            self._record_error(state, layout.name, f"{version}: {err}")
            self._count_failure(state, layout.name, version, err)
            return Outcome.FAILED
        record.failures = 0
        if record.rolling_back is not None:
            self._report_rollback(state, layout, version, record.last_error)
            return Outcome.ROLLED_BACK
        self._emit(EventKind.ROLE_APPLIED, layout.name, version, "restarted and healthy")
        self._save(state)
        return Outcome.APPLIED

    def _count_failure(
        self, state: ManagerState, name: str, version: Version, err: RoleError
    ) -> None:
        record = state.role(name)
        record.failures += 1
        self._save(state)
        if record.failures >= self.config.safe_mode_after and not state.safe_mode.active:
            self._enter(
                state,
                reason=f"role {name} {version} failed {record.failures} times in a row: {err}",
                manual=False,
                role=name,
                version=version,
            )

    def _prune(self, layout: RoleLayout) -> None:
        """Drop the versions neither link names, and the engine images only they carried."""
        carried = imagegc.carried(self.config.root)
        prune(layout)
        self._collect_images(carried)

    def _collect_images(self, carried: set[str]) -> None:
        imagegc.collect(
            carried, root=self.config.root, safe_mode_bundle=self.config.safe_mode_bundle
        )

    def _remove(self, state: ManagerState, name: str) -> None:
        """A role no longer assigned: stop it and drop its versions, keep its state/ data."""
        layout = self._layout(name)
        current = layout.current_version()
        if current is not None:
            self._stop(layout, current)
        carried = imagegc.carried(self.config.root)
        for entry in layout.dir.iterdir():
            if entry.name == "state":
                continue
            if entry.is_symlink() or entry.is_file():
                entry.unlink()
            else:
                shutil.rmtree(entry)
        floor = state.role(name).floor
        state.roles.pop(name)
        self._collect_images(carried)
        if floor is not None:  # a signed floor outlives the role: re-adding it cannot go below
            state.roles[name] = RoleRecord(floor=floor)
        self._save(state)
        log.info("role %s removed; its state directory is kept", name)

    # ----------------------------------------------------------------- safe mode

    def _enter(
        self,
        state: ManagerState,
        *,
        reason: str,
        manual: bool,
        by_overlord: bool = False,
        role: str | None = None,
        version: Version | None = None,
    ) -> None:
        state.safe_mode = SafeModeRecord(
            active=True,
            manual=manual,
            by_overlord=by_overlord,
            reason=reason,
            role=role,
            version=version,
            since=_now(),
        )
        self._save(state)
        for name in [role] if role else self._installed():
            layout = self._layout(name)
            current = layout.current_version()
            if current is not None:
                self._stop(layout, current)
        self._start_safe_mode(state)
        self._emit(EventKind.SAFE_MODE_ENTERED, role or SAFE_MODE_ROLE, version, reason)

    def _leave_and_restart(self, state: ManagerState) -> None:
        self._leave(state)
        for name in self._installed():
            self._keep_running(state, self._layout(name))

    def _leave(self, state: ManagerState) -> None:
        layout = self._layout(SAFE_MODE_ROLE)
        current = layout.current_version()
        if current is not None:
            self._stop(layout, current)
        reason = state.safe_mode.reason
        state.safe_mode = SafeModeRecord()
        for record in state.roles.values():
            record.failures = 0
        self._save(state)
        self._emit(EventKind.SAFE_MODE_LEFT, SAFE_MODE_ROLE, None, "safe mode left", reason or None)

    def _start_safe_mode(self, state: ManagerState) -> None:
        """Stage the safe-mode stack from the OS image if needed, write the page, start it."""
        layout = self._layout(SAFE_MODE_ROLE)
        try:
            spec = load_bundle(self.config.safe_mode_bundle).spec
            if not layout.has_version(spec.version):
                self.stage(SAFE_MODE_ROLE, self.config.safe_mode_bundle, spec.version)
            swap(layout, spec.version)
            self._refresh_page(state)
            self._start(state, layout, spec.version)
        except (FleetError, OSError) as err:
            log.error("safe-mode stack did not start: %s", err)
            self._record_error(state, SAFE_MODE_ROLE, str(err))
            self._save(state)

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
            and _valid_name(entry.name)
            and (entry / "current").is_symlink()
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[ManagerState]:
        self.config.root.mkdir(parents=True, exist_ok=True)
        with (self.config.root / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = load_or_reset(self._state_path)
            yield state
            self._save(state)

    def _save(self, state: ManagerState) -> None:
        save_state(self._state_path, state)

    def _emit(
        self,
        kind: EventKind,
        role: str,
        version: Version | None,
        message: str,
        reason: str | None = None,
    ) -> None:
        self.on_event(
            RoleEvent(kind=kind, role=role, version=version, message=message, reason=reason)
        )

    def _record_error(self, state: ManagerState, name: str, error: str) -> None:
        record = state.role(name)
        record.last_error = error[:500]
        record.last_error_at = _now()

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

    def _write_runtime_files(self, layout: RoleLayout, directory: Path, bundle: Bundle) -> None:
        runtime.write_runtime_files(
            directory,
            bundle,
            state_dir=layout.state_dir,
            device_id=self.config.device_id,
            config=runtime.load_role_config(self.config.role_config_dir, layout.name),
        )

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

    def _start(self, state: ManagerState, layout: RoleLayout, version: Version) -> None:
        record = state.roles.get(layout.name)
        if record is not None:
            _check_startable(record, version)
        bundle = load_bundle(layout.version_dir(version), staged=True)
        for name in bundle.spec.state:
            (layout.state_dir / name).mkdir(parents=True, exist_ok=True)
        check_state_binds(bundle.compose, layout.state_dir)
        project = self._project(layout, version, bundle)
        timeout = bundle.spec.health.timeout_s
        self.checkpoint("compose-up")
        runtime.ensure_images(bundle)  # a rollback's image may have been removed meanwhile
        try:
            self.compose.up(project, timeout_s=timeout + _UP_SLACK_S, wait_s=timeout, recreate=True)
        except EngineError as err:
            raise self._explain_up_failure(project, bundle, timeout, err) from err
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


def _refusal(record: RoleRecord, version: Version) -> TargetRefused | None:
    """Why ``version`` must not start, by the rule a fresh install follows; None if it may."""
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


def _check_startable(record: RoleRecord, version: Version) -> None:
    refused = _refusal(record, version)
    if refused is not None:
        raise refused


def _valid_name(name: str) -> bool:
    return re.match(ROLE_NAME_RE, name) is not None


@contextlib.contextmanager
def _scratch(root: Path) -> Iterator[Path]:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=root) as tmp:
        yield Path(tmp)
