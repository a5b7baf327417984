"""Role bundles from the signed release repository: the ``fetch`` callable of the manager.

The Overlord only names a role and version; everything trusted comes from TUF. The target
must be signed as a role of exactly that version for this hardware, and must not go below the
installed version of the role or the floor the signed metadata declares. The floor goes back
to the manager with the archive: it keeps it and applies it to every later start of the role
(rollbacks to ``previous`` included).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fleetcore.release import Hardware, role_target
from fleetcore.version import Version
from fleetcore.wire import DesiredRole
from signing.client import ReleaseClient
from signing.errors import DowngradeRefused
from signing.rollback import check_upgrade
from signing.targets import TargetKind
from updater.roles.errors import TargetRefused
from updater.roles.manager import FetchedBundle


class TufRoleFetcher:
    """Download the verified ``tar.zst`` of a desired role into ``cache_dir``."""

    def __init__(
        self,
        client: ReleaseClient,
        cache_dir: Path,
        *,
        hardware: Hardware,
        installed: Callable[[str], Version | None],
    ) -> None:
        self.client = client
        self.cache_dir = cache_dir
        self.hardware = hardware
        self.installed = installed

    def __call__(self, role: DesiredRole) -> FetchedBundle:
        name = role_target(role.name, role.version)
        if role.target != name:
            raise TargetRefused(f"desired state names target {role.target!r}, expected {name!r}")
        target = self.client.get_target(name)
        custom = target.custom
        if custom is None or custom.kind is not TargetKind.ROLE:
            raise TargetRefused(f"{name} is not signed as a role bundle")
        if custom.version != role.version:
            raise TargetRefused(f"{name} is signed as version {custom.version}")
        if self.hardware not in custom.hardware:
            raise TargetRefused(f"{name} is not signed for {self.hardware.value} hardware")
        installed = self.installed(role.name)
        try:
            check_upgrade(
                role.version, installed=installed or role.version, floor=custom.version_floor
            )
        except DowngradeRefused as err:
            raise TargetRefused(str(err), hint=err.hint) from err
        # One cached archive per role: the staged version directory is what persists.
        for stale in self.cache_dir.glob(f"{role.name}-*.tar.zst"):
            stale.unlink()
        dest = self.cache_dir / f"{role.name}-{role.version}.tar.zst"
        return FetchedBundle(self.client.download(target, dest), floor=custom.version_floor)
