"""fleetctl's exceptions: local (usage, configuration) and remote (transport, refusals)."""

from __future__ import annotations

from fleetcore.errors import FleetError


class FleetctlError(FleetError):
    """Root of fleetctl's failures; each is one line and a hint, exit code 1."""


class UsageError(FleetctlError):
    """The command line cannot be carried out as written (exit code 2)."""


class ConfigFileError(FleetctlError):
    """The credentials file is unreadable, malformed or readable by others."""


class ServerError(FleetctlError):
    """The Overlord could not be reached or did not answer as an Overlord does."""


class Refused(ServerError):
    """The Overlord answered with an error status; ``status`` is the HTTP code."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class RolloutHalted(FleetctlError):
    """``rollouts wait`` saw the rollout halt or be aborted."""
