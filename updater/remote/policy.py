"""Whether this device serves a session the Overlord names: its own veto comes first."""

from __future__ import annotations

from fleetcore.firstboot import RemoteAccess

KINDS = ("logs", "shell", "forward")


def refusal(kind: str, access: RemoteAccess) -> str | None:
    """The reason this device refuses a ``kind`` session, or None when it serves it."""
    if kind not in KINDS:
        return f"unknown remote session kind {kind!r}"
    if not getattr(access, kind):
        return f"this device's fleet.yaml forbids {kind} sessions (remote.{kind}: false)"
    return None
