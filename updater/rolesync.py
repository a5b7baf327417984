"""The bridge between the agent and the role manager: desired roles in, role status out.

The agent calls :meth:`RoleSync.sync` on every poll with the newest desired state (so a crash
loop is noticed even while nothing changes), :meth:`RoleSync.status` for heartbeats, and the
trial health checks call :meth:`RoleSync.health`. A device with no roles assigned and none
installed never touches Docker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from fleetcore import redact
from fleetcore.release import Hardware
from fleetcore.wire import DesiredState, EventKind, Health, RoleStatus
from signing.client import ReleaseClient
from updater.queue import EventQueue
from updater.roles.fetch import TufRoleFetcher
from updater.roles.manager import RoleEvent, RoleManager, RoleOutcome

log = logging.getLogger(__name__)
_QUIET = frozenset({EventKind.ROLE_APPLIED, EventKind.SAFE_MODE_LEFT})
# Outcomes after which every assigned role runs with the configuration it was given.
_CONFIGURED = frozenset({RoleOutcome.APPLIED, RoleOutcome.UNCHANGED, RoleOutcome.ROLLED_BACK})


class RoleSync:
    def __init__(
        self,
        *,
        manager: RoleManager,
        events: EventQueue,
        open_client: Callable[[], ReleaseClient],
        cache_dir: Path,
        hardware: Hardware | Callable[[], Hardware],
    ) -> None:
        self.manager = manager
        self.events = events
        self.open_client = open_client
        self.cache_dir = cache_dir
        # The engine's ``hardware`` is read at each sync: on a refused board it raises
        # BoardRefused there, and no role is fetched.
        self._hardware = hardware
        manager.on_event = self._queue
        # The desired state's config_digest once every role runs with its configuration
        # (Heartbeat.config_digest); None until then, after each start of the agent too.
        self.applied_digest: str | None = None

    @property
    def hardware(self) -> Hardware:
        return self._hardware if isinstance(self._hardware, Hardware) else self._hardware()

    def _queue(self, event: RoleEvent) -> None:
        """Queue the event for the Overlord, then log it: the device's journal tells the same
        story (``role-failed NAME VERSION: MESSAGE (REASON)``), and a power cut right after
        the log line cannot lose the queued event."""
        self.events.put(
            event.kind,
            version=event.version,
            message=event.message,
            reason=event.reason,
            data=dict(event.data()),
        )
        log.log(
            logging.INFO if event.kind in _QUIET else logging.WARNING,
            "%s %s %s: %s%s",
            event.kind.value,
            event.role,
            event.version,
            event.message,
            f" ({event.reason})" if event.reason else "",
        )

    def sync(self, desired: DesiredState) -> None:
        """Apply the desired roles and configuration; secret values are masked in every log
        line and event from now on, and written nowhere but the roles' ``.env`` files."""
        redact.SECRETS.add(*(v.value for v in desired.config.values() if v.secret))
        if not desired.roles and not desired.safe_mode and not self.manager.status():
            self.applied_digest = desired.config_digest  # no role to give it to
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fetch = TufRoleFetcher(
            self.open_client(),
            self.cache_dir,
            hardware=self.hardware,
            installed=self.manager.installed_version,
        )
        variables = {key: variable.value for key, variable in desired.config.items()}
        outcomes = self.manager.apply(desired.roles, fetch, variables=variables)
        self.manager.follow_desired_safe_mode(desired.safe_mode)
        if not self.manager.unconfigured and set(outcomes.values()) <= _CONFIGURED:
            self.applied_digest = desired.config_digest

    def status(self) -> list[RoleStatus]:
        return self.manager.status()

    def health(self) -> list[tuple[str, bool, str]]:
        """For the trial's health checks: every installed role must be healthy."""
        return [(s.name, s.health is Health.HEALTHY, s.health.value) for s in self.status()]
