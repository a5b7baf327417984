"""Exceptions of the trust chain: one root, a branch for the repository side (keys, signing),
a branch for the device side (verification), and network failures apart from both.

A network outage is not a verification failure: an install waits and retries after the one,
and fails after the other. Kept as separate branches, no ``except`` order can confuse them.
"""

from __future__ import annotations

from fleetcore.errors import FleetError


class SigningError(FleetError):
    """Root of every signing/ failure."""


class KeyStoreError(SigningError):
    """A key file is missing, unreadable, of the wrong type or needs a passphrase."""


class RepositoryError(SigningError):
    """The repository on disk is missing, malformed or cannot take the requested change."""


class VerificationError(SigningError):
    """Something a device was about to trust failed verification. Nothing was installed."""


class MetadataError(VerificationError):
    """TUF metadata was rejected: bad signature, below threshold, expired, rolled back."""


class TargetNotFound(VerificationError):
    """The signed targets metadata has no such target."""


class TargetMismatch(VerificationError):
    """A downloaded target does not match its signed length or hashes."""


class DownloadError(SigningError):
    """The repository could not be reached or answered too slowly (transient)."""


class DowngradeRefused(VerificationError):
    """A verified version is below the installed one or the device's recorded floor."""
