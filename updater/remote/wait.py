"""Waiting between polls for a remote session to be opened: the long-poll of ADR 0083.

While no session is named, the agent spends its sleep between polls in
``GET /devices/{id}/remote-wait``, which the Overlord answers as soon as an operator opens a
session for the device on any replica, so the device joins within a second or so of the
``POST`` instead of at its next poll. A device whose ``fleet.yaml`` forbids every kind never
waits: it could only refuse. A failed wait (network, an Overlord without the route) is not
tried again for a while, doubling; the agent then simply sleeps, as it did before.
"""

from __future__ import annotations

import logging
import threading
import time

from fleetcore.firstboot import RemoteAccess
from updater.errors import OverlordClientError
from updater.overlord import OverlordClient, OverlordRejected

log = logging.getLogger(__name__)

# The longest hold asked for: below nginx's proxy_read_timeout for /api/ (60 s as shipped);
# the Overlord may hold less (``remote_wait_max_s``).
HOLD_MAX_S = 50
# After a wake, the next wait starts no sooner: a desired state that does not name the
# session yet (a replica's cache a moment behind) costs a poll every this many seconds.
AFTER_WAKE_S = 2.0
RETRY_MIN_S, RETRY_MAX_S = 5.0, 600.0
# An Overlord that does not know the route: ask again after an hour (it may be upgraded).
UNSUPPORTED_S = 3600.0


class SessionWait:
    def __init__(self, client: OverlordClient, access: RemoteAccess) -> None:
        self._client = client
        self.wanted = access.logs or access.shell or access.forward
        self._not_before = 0.0
        self._retry_s = RETRY_MIN_S

    def ready(self) -> bool:
        """Whether to wait on the Overlord now rather than sleep."""
        return (
            self.wanted
            and self._client.identity is not None
            and time.monotonic() >= self._not_before
        )

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Up to ``seconds`` (at most :data:`HOLD_MAX_S`, at least 1) for a session; True
        when one is open. Never raises: a failure sleeps out ``seconds`` and is not tried
        again for a while."""
        hold = max(1, min(HOLD_MAX_S, int(seconds)))
        try:
            pending = self._client.remote_wait(hold)
        except Exception as err:  # expected or not, the agent then sleeps as before
            if stop.is_set():
                return False
            if isinstance(err, OverlordRejected) and err.status in (404, 405):
                pause = UNSUPPORTED_S
            else:
                pause, self._retry_s = self._retry_s, min(self._retry_s * 2, RETRY_MAX_S)
            level = logging.INFO if isinstance(err, OverlordClientError) else logging.ERROR
            log.log(level, "not waiting for remote sessions for %.0f s: %r", pause, err)
            self._not_before = time.monotonic() + pause
            stop.wait(seconds)
            return False
        self._retry_s = RETRY_MIN_S
        if pending:
            self._not_before = time.monotonic() + AFTER_WAKE_S
        return pending
