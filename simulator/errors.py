"""Simulator failures: one root below FleetError, subtrees by origin."""

from fleetcore.errors import FleetError


class SimulatorError(FleetError):
    """The simulated fleet could not run against the Overlord."""


class ServerError(SimulatorError):
    """The Overlord (or baseline) server process did not start or answer."""


class SetupError(SimulatorError):
    """Keys, releases or device disks for the demo could not be made."""


class OverlordRefused(SimulatorError):
    """The Overlord answered an operator or device request with an error."""
