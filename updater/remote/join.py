"""The agent's side of a remote session (ADR 0074): one outbound WebSocket, in a thread.

When the desired state names a session, :class:`Join` connects to the Overlord's device
route with ``wsproto`` over a plain socket (the standard library's ``ssl`` for https),
authenticated like every device request, and sends ``hello``. A session this device refuses
(its ``fleet.yaml`` veto, or a kind this agent does not serve) gets ``close`` with the reason;
a log tail sends each journal entry as one binary frame (JSON), and a ``dropped`` count when
its bounded reader lost entries, a shell relays its terminal (:mod:`updater.remote.shell`)
and a forward relays TCP streams to its port on the loopback (:mod:`updater.remote.forward`),
until either side closes or the agent stops it. The update loop only starts and stops the
thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence

import httpx

from fleetcore.firstboot import RemoteAccess
from fleetcore.websocket import Closed, WebSocket
from fleetcore.wire import DesiredRemote
from updater import tls
from updater.remote import forward, shell
from updater.remote.journal import DEFAULT_LINES, JournalTail, TailRequest
from updater.remote.policy import refusal
from updater.remote.terminal import login_command

log = logging.getLogger(__name__)
READ_S = 0.5  # how long a journal read waits: also how often the socket is checked


def _control(message_type: str, **fields: object) -> str:
    return json.dumps({"type": message_type, **fields})


class Join:
    """One session served by one thread; :meth:`stop` ends it and waits for the thread."""

    def __init__(
        self,
        session: DesiredRemote,
        *,
        url: httpx.URL,
        headers: dict[str, str],
        access: RemoteAccess,
        version: str,
        journalctl: str = "journalctl",
        shell_command: Sequence[str] | None = None,
    ) -> None:
        self.session = session
        self._url, self._headers = url, headers
        self._access, self._version, self._journalctl = access, version, journalctl
        self._shell_command = shell_command
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="remote-session", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            conn = WebSocket(str(self._url), self._headers, context=tls.client_context())
        except (OSError, Closed) as err:
            log.warning("remote session %s: cannot join: %s", self.session.session, err)
            return
        try:
            conn.send_text(_control("hello", session=self.session.session, version=self._version))
            reason = refusal(self.session.kind, self._access) or self._serve(conn)
            conn.send_text(_control("close", reason=reason))
            log.info("remote session %s ended: %s", self.session.session, reason)
        except Closed as ended:
            log.info("remote session %s ended by the Overlord: %s", self.session.session, ended)
        except OSError as err:
            log.warning("remote session %s: connection lost: %s", self.session.session, err)
        finally:
            conn.close()

    def _serve(self, conn: WebSocket) -> str:
        """Serves the session's kind; the reason this side ends it."""
        if self.session.kind == "shell":
            limits = shell.ShellLimits(
                idle_s=self._access.shell_idle_s, max_s=self._access.shell_max_s
            )
            command = self._shell_command or login_command()
            return shell.serve(conn, self._stop, command, limits)
        if self.session.kind == "forward":
            if self.session.port is None:
                return "a forward session needs the device's port"
            return forward.serve(conn, self._stop, self.session.port)
        return self._tail(conn)

    def _tail(self, conn: WebSocket) -> str:
        """Tails the journal into the socket; the reason this side ends the session."""
        lines = self.session.lines if self.session.lines is not None else DEFAULT_LINES
        request = TailRequest(unit=self.session.unit, priority=self.session.priority, lines=lines)
        try:
            tail = JournalTail(request, journalctl=self._journalctl)
        except (ValueError, OSError) as err:
            return f"cannot read the journal: {err}"
        with tail:
            while not self._stop.is_set():
                _check(conn)
                batch = tail.read(READ_S)
                if batch.dropped:  # the operator sees the gap, as for the Overlord's drops
                    conn.send_text(_control("dropped", count=batch.dropped))
                for entry in batch.entries:
                    conn.send_bytes(json.dumps(entry).encode())
                if batch.finished:
                    return "the journal reader ended"
        return "the agent stopped"


def _check(conn: WebSocket) -> None:
    """Reads what the Overlord sent without waiting; raises when it ended the session."""
    while (message := conn.receive(0)) is not None:
        try:
            control = json.loads(message) if isinstance(message, str) else {}
        except ValueError:
            continue  # the Overlord only sends JSON control frames; anything else is noise
        if isinstance(control, dict) and control.get("type") in ("close", "error"):
            raise Closed(str(control.get("reason", "")))
