"""Exceptions of the image builder: one root, subtrees by origin."""

from __future__ import annotations

from fleetcore.errors import FleetError


class ImageError(FleetError):
    """Root of every image-builder failure."""


class InputError(ImageError):
    """A rootfs, config file or argument the operator gave is unusable."""


class LayoutError(InputError):
    """The content does not fit the partition layout."""


class BuildError(ImageError):
    """A rootfs build step (debootstrap, a stage script, pi-gen) failed."""


class FlashError(ImageError):
    """Writing or verifying a target device or image file failed."""


class UnsafeTargetError(FlashError):
    """The flash target is mounted or holds the running system."""


class BuildInterrupted(BuildError):
    """SIGTERM, SIGINT or SIGHUP stopped a build; its mounts and partial output are gone."""
