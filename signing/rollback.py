"""Anti-rollback: a device never installs a version lower than it runs or than its floor.

A bad release is fixed by publishing a newer one, never by going back.
"""

from __future__ import annotations

from fleetcore.version import Version
from signing.errors import DowngradeRefused


def check_upgrade(candidate: Version, *, installed: Version, floor: Version | None) -> None:
    """Raise :class:`DowngradeRefused` unless ``candidate`` may replace ``installed``.

    Reinstalling the same version is allowed (repairing a slot); anything lower is not.
    """
    if candidate < installed:
        raise DowngradeRefused(
            f"refusing version {candidate}: it is lower than the installed {installed}",
            hint="a bad release is fixed by publishing a newer version",
        )
    if floor is not None and candidate < floor:
        raise DowngradeRefused(
            f"refusing version {candidate}: it is below this device's version floor {floor}",
            hint="the floor was raised by an earlier release and never goes down",
        )


def raise_floor(current: Version | None, declared: Version | None) -> Version | None:
    """The floor a device records after installing a target that declares ``declared``."""
    if declared is None:
        return current
    if current is None or declared > current:
        return declared
    return current
