"""Engine images that only pruned role versions carried: removed with those versions.

An image a bundle carries (``images/<hex>.tar``) is loaded by the role manager, so the manager
also owns its removal: once no staged version of any role (nor the safe-mode stack) lists
it, ``docker image rm`` frees its layers. Images a bundle only names (registry pulls, images
preloaded into the OS image) are never removed here. The removal is not forced: an image a
container still uses, or one tagged more than once, stays and is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fleetcore.errors import CommandError, FleetError, VersionError
from fleetcore.rolebundle.images import carried_ids
from fleetcore.rolebundle.spec import ROLE_FILE, load_spec
from fleetcore.run import run
from fleetcore.version import Version

log = logging.getLogger(__name__)


def _version_dirs(root: Path) -> list[Path]:
    """``<root>/<role>/<version>/`` folders (links, state/ and crash leftovers excluded)."""
    found = []
    for path in root.glob("*/*"):
        if path.is_symlink() or not path.is_dir():
            continue
        try:
            Version(path.name)
        except VersionError:
            continue
        found.append(path)
    return sorted(found)


def carried(root: Path) -> set[str]:
    """Every image ID an archive in a staged version under ``root`` carries."""
    return set().union(*(carried_ids(path) for path in _version_dirs(root)))


def _listed(folders: list[Path]) -> set[str] | None:
    """Every image the ``role.yaml`` of ``folders`` lists; None if one cannot be read."""
    listed: set[str] = set()
    for folder in folders:
        try:
            listed.update(load_spec((folder / ROLE_FILE).read_text(encoding="utf-8")).images)
        except (FleetError, OSError) as err:
            log.warning("keeping every role image: cannot read %s: %s", folder / ROLE_FILE, err)
            return None
    return listed


def collect(
    candidates: set[str], *, root: Path, safe_mode_bundle: Path, docker: str = "docker"
) -> list[str]:
    """Remove the ``candidates`` no staged version lists any more; return those removed."""
    folders = _version_dirs(root)
    if safe_mode_bundle.is_dir():
        folders.append(safe_mode_bundle)
    listed = _listed(folders)
    if listed is None:
        return []
    removed = []
    for image in sorted(candidates - listed):
        try:
            proc = run([docker, "image", "rm", image], check=False)
        except CommandError as err:
            log.warning("cannot remove image %s: %s", image, err)
            continue
        if proc.returncode == 0:
            removed.append(image)
            log.info("removed image %s: no staged role version carries it any more", image)
        else:
            reason = proc.stderr.decode(errors="replace").strip()
            log.info("image %s no longer carried but kept by the engine: %s", image, reason)
    return removed
