"""Background jobs, run by whichever replica holds the ``scheduler`` lease.

Jobs: the rollout engine and the remote-session timeouts (every ``engine_interval_s``, and
at the moment a rollout decision is due when that comes sooner),
snapshot+timestamp re-signing (when the served timestamp is older than
``timestamp_refresh_s``), heartbeat and shell-recording retention (hourly).
A replica that loses the database or the lease simply stops running them until it has both
again; a standby replica takes over within ``lease_ttl_s`` when the holder dies.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from overlord import leases
from overlord.context import AppContext
from overlord.db import unit_of_work, utcnow
from overlord.devices import changes
from overlord.devices import service as devices_service
from overlord.errors import OverlordError
from overlord.remote import recordings
from overlord.remote import service as remote_service
from overlord.rollouts import service as rollouts_service
from overlord.tuf import service as tuf_service
from overlord.tuf.models import WRITE_LEASE
from signing.errors import SigningError

log = logging.getLogger(__name__)
SCHEDULER_LEASE = "scheduler"
_PRUNE_EVERY_S = 3600.0
# A pass planned for a due moment runs just after it, so the clock comparison sees it passed.
_DUE_SLACK_S = 0.01


class Scheduler:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="overlord-scheduler", daemon=True)
        # None, not 0.0: the monotonic clock starts at boot, so a host up for less than an
        # hour would otherwise wait for its first prune.
        self._last_prune: float | None = None
        # When the rollout engine's next decision is due, as its last pass on this replica
        # found; None when nothing is due or this replica does not hold the lease.
        self.next_due: datetime | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.pause_s()):
            try:
                self.run_once()
            except Exception:
                # A database outage or a bad repository must not kill the thread; it retries.
                self.next_due = None
                log.exception("scheduler pass failed")

    def pause_s(self, now: datetime | None = None) -> float:
        """Until the next pass: the engine interval, or less when a rollout decision (a
        success window's end, a scheduled start, a deadline) is due sooner."""
        interval = self._ctx.settings.engine_interval_s
        if self.next_due is None:
            return interval
        due_in = (self.next_due - (now or utcnow())).total_seconds() + _DUE_SLACK_S
        return min(interval, max(due_in, 0.0))

    def run_once(self) -> bool:
        """One pass if this replica holds (or wins) the lease; returns whether it ran."""
        ctx = self._ctx
        with unit_of_work(ctx.sessions) as session:
            if not leases.try_acquire(
                session,
                name=SCHEDULER_LEASE,
                holder=ctx.replica_id,
                ttl_s=max(ctx.settings.lease_ttl_s, 3 * ctx.settings.engine_interval_s),
            ):
                self.next_due = None
                return False
        with unit_of_work(ctx.sessions) as session:
            self.next_due = rollouts_service.tick(session)
        with unit_of_work(ctx.sessions) as session:
            remote_service.sweep(session, remote_service.Limits.of(ctx.settings))
        self._refresh_timestamp()
        if self._last_prune is None or time.monotonic() - self._last_prune >= _PRUNE_EVERY_S:
            with unit_of_work(ctx.sessions) as session:
                removed = devices_service.prune_heartbeats(
                    session, retention_days=ctx.settings.heartbeat_retention_days
                )
                changes.prune(session)
                pieces = recordings.prune(
                    session, retention_days=ctx.settings.remote_recording_retention_days
                )
            log.info("pruned %d heartbeats, %d shell recording pieces", removed, pieces)
            self._last_prune = time.monotonic()
        return True

    def _refresh_timestamp(self) -> None:
        ctx = self._ctx
        if tuf_service.timestamp_age_s(ctx.settings.repo_dir) is None:
            return
        try:
            with leases.held(
                ctx.sessions,
                name=WRITE_LEASE,
                holder=f"{ctx.replica_id}/scheduler",
                ttl_s=120,
                wait_s=0,
            ):
                tuf_service.refresh_if_due(
                    repo_dir=ctx.settings.repo_dir,
                    keys_dir=ctx.settings.keys_dir,
                    interval_s=ctx.settings.timestamp_refresh_s,
                )
        except (OverlordError, SigningError) as err:
            log.warning("timestamp refresh skipped: %s", err)
