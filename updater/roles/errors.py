"""Exceptions of the device's role manager: one root, subtrees by origin.

A bundle's own faults are the format's (``fleetcore.rolebundle.errors``, root
``BundleError``); :class:`TargetRefused` joins them, since a refused target is marked bad
like a malformed bundle.
"""

from __future__ import annotations

from fleetcore.errors import FleetError
from fleetcore.rolebundle.errors import BundleError


class RoleError(FleetError):
    """Root of every role-manager failure that is not the bundle's own fault."""


class NoSpace(RoleError):
    """The data partition lacks room to stage a bundle; transient, so the version is not
    marked bad and the attempt is repeated once space is freed."""


class EngineError(RoleError):
    """Docker or docker compose failed or is missing."""


class HealthGateFailed(RoleError):
    """A role's containers did not all become healthy."""


class DeviceMissing(RoleError):
    """A host device the role needs is not present on this device."""


class StateError(RoleError):
    """The role manager's persisted state cannot be read."""


class TargetRefused(BundleError):
    """Verified metadata says this target must not be installed here (kind, version, hardware,
    or a downgrade); permanent for that version, so the manager marks it bad."""
