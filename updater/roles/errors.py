"""Exceptions of the role manager: one root, subtrees by origin."""

from __future__ import annotations

from fleetcore.errors import FleetError


class RoleError(FleetError):
    """Root of every role-manager failure."""


class BundleError(RoleError):
    """A role bundle is malformed or breaks the bundle policy; it is never applied."""


class ArchiveError(BundleError):
    """A bundle archive is unsafe to unpack (traversal, special files, size)."""


class ImageArchiveError(BundleError):
    """An image archive a bundle carries (``images/<hex>.tar``) is malformed or not pinned."""


class TemplateError(BundleError):
    """``.env.template`` cannot be rendered with the device's configuration."""


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
