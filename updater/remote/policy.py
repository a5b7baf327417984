"""Whether this device serves a session the Overlord names: its own veto comes first."""

from __future__ import annotations

from fleetcore.firstboot import RemoteAccess

KINDS = ("logs", "shell", "forward")
# What this agent version can serve; the shell and port forwarding come with later agents.
SERVED = frozenset({"logs"})


def refusal(kind: str, access: RemoteAccess) -> str | None:
    """The reason this device refuses a ``kind`` session, or None when it serves it."""
    if kind not in KINDS:
        return f"unknown remote session kind {kind!r}"
    if not getattr(access, kind):
        return f"this device's fleet.yaml forbids {kind} sessions (remote.{kind}: false)"
    if kind not in SERVED:
        return f"{kind} sessions are not served by this agent version (log tails only)"
    return None
