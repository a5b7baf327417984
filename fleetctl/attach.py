"""Opening a remote session and attaching to it (ADR 0074), shared by ``fleetctl logs`` and
``fleetctl shell``: a session that cannot be attached to is ended at once, and leaving sends
``close`` so it ends ``operator`` rather than by the idle timeout."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from fleetcore.websocket import Closed, WebSocket
from fleetctl.client import Client
from fleetctl.errors import ServerError


def open_attached(client: Client, device_id: str, body: dict[str, Any]) -> tuple[str, WebSocket]:
    """Opens a session of ``body``'s kind on the device and attaches to it: its id and socket."""
    opened = client.call("POST", f"/devices/{device_id}/remote-sessions", body=body)
    try:
        return opened["id"], client.websocket(f"/remote/{opened['id']}/attach")
    except ServerError:
        with contextlib.suppress(ServerError):
            client.call("DELETE", f"/remote-sessions/{opened['id']}")
        raise


def leave(socket: WebSocket) -> None:
    """Ends the session from this side and closes the socket; quiet if it is already over."""
    with contextlib.suppress(OSError, Closed):
        socket.send_text(json.dumps({"type": "close", "reason": "the operator left"}))
    socket.close()
