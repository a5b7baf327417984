"""Exceptions of the role-bundle format: one root, :class:`BundleError`.

A bundle that raises one of these is never applied. The device's own failures (engine, health
gate, space, state) are ``updater.roles.errors``; its ``TargetRefused`` is a ``BundleError``
too, since a refused target is marked bad like a malformed one.
"""

from __future__ import annotations

from fleetcore.errors import FleetError


class BundleError(FleetError):
    """A role bundle is malformed or breaks the bundle policy; it is never applied."""


class ArchiveError(BundleError):
    """A bundle archive is unsafe to unpack (traversal, special files, size)."""


class ImageArchiveError(BundleError):
    """An image archive a bundle carries (``images/<hex>.tar``) is malformed or not pinned."""


class TemplateError(BundleError):
    """``.env.template`` cannot be rendered with the device's configuration."""


class MissingValue(TemplateError):
    """The template needs a value the device's configuration lacks.

    The device's configuration is at fault, not the bundle: the role manager retries the
    version once the value is set (``fleetctl config set``) instead of marking it bad.
    """
