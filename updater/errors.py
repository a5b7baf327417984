"""The updater's exception tree: one root, subtrees by where the failure comes from."""

from __future__ import annotations

from fleetcore.errors import FleetError


class UpdaterError(FleetError):
    """Root of every updater/ failure."""


class ConfigError(UpdaterError):
    """A configuration layer is missing, unreadable or invalid."""


class BoardRefused(UpdaterError):
    """This board cannot run the fleet's A/B updates (no tryboot A/B, or not the board the
    configuration names): the agent neither enrols nor installs, and says why."""


class UpdateStateError(UpdaterError):
    """The persisted state on /data is unreadable or a transition is not allowed."""


class DiskError(UpdaterError):
    """The boot disk or one of its partitions cannot be found, read or written."""


class ActiveSlotError(DiskError):
    """A write was aimed at the slot the device is running from. Nothing was written."""


class FirmwareError(UpdaterError):
    """The bootloader state cannot be read or a trial boot cannot be requested."""


class InstallError(UpdaterError):
    """An update could not be installed; the active slot is untouched."""


class ChunkError(InstallError):
    """A chunk could not be fetched or does not match its signed hash."""


class TransferError(InstallError):
    """The release server is unreachable for now; the install resumes on a later attempt."""


class ImageMismatch(InstallError):
    """A written slot does not read back as the signed image."""


class SpaceError(InstallError):
    """An image exceeds its partition, the configured size cap, or free space on /data."""


class NoSpace(SpaceError):
    """/data lacks the room to stage an install now: it waits and goes on once space is back."""


class VersionRejected(InstallError):
    """A version is marked bad on this device or built for other hardware."""


class OverlordClientError(UpdaterError):
    """The Overlord could not be reached or answered something unexpected."""


class HealthError(UpdaterError):
    """A health check could not be run."""


class BootloaderError(UpdaterError):
    """The EEPROM bootloader cannot be read, or an update of it is refused or failed. The
    running bootloader is untouched (the ROM's recovery path guarantees it: docs/boards.md)."""
