"""Which remote session the agent serves: the one its desired state names (ADR 0074).

Each session is joined once: a session that ended (either side closed it) is not joined
again while a stale desired state still names it; a session no longer named is stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fleetcore.firstboot import RemoteAccess
from fleetcore.wire import DesiredRemote
from updater.overlord import OverlordClient
from updater.remote.join import Join


class RemoteFollower:
    def __init__(
        self,
        client: OverlordClient,
        access: RemoteAccess,
        *,
        version: Callable[[], str],
        journalctl: str = "journalctl",
        shell_command: Sequence[str] | None = None,
    ) -> None:
        self._client, self._access = client, access
        self._version, self._journalctl = version, journalctl
        self._shell_command = shell_command
        self._join: Join | None = None
        self._joined: str | None = None

    def follow(self, named: DesiredRemote | None) -> None:
        """Starts serving ``named`` in a thread, or stops what is no longer named; never
        blocks on the session itself."""
        current = self._join
        if current is not None and (named is None or named.session != current.session.session):
            current.stop()
            self._join = None
        if named is None or named.session == self._joined:
            return
        path = f"/devices/{self._client.enrolled().device_id}/remote/{named.session}"
        url, headers = self._client.websocket_request(path)
        self._join = Join(
            named,
            url=url,
            headers=headers,
            access=self._access,
            version=self._version(),
            journalctl=self._journalctl,
            shell_command=self._shell_command,
        )
        self._joined = named.session
        self._join.start()

    @property
    def serving(self) -> bool:
        return self._join is not None and self._join.running

    def stop(self) -> None:
        if self._join is not None:
            self._join.stop()
            self._join = None
