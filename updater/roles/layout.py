"""The on-disk layout of roles and its power-cut-safe changes.

    <root>/<role>/<version>/      a staged bundle plus its rendered .env (published by rename)
    <root>/<role>/current   ->    <version>   the version to run
    <root>/<role>/previous  ->    <version>   the last version that ran, kept for rollback
    <root>/<role>/state/          the role's persistent data (never touched by updates)

A version directory appears only by renaming a fully written and fsynced staging directory,
and a link changes only by renaming a new symlink over it and fsyncing the directory, so after
a power cut at any instant ``current`` names a complete version (the old or the new one).
The optional ``checkpoint`` callable is called between the steps; fault-injection tests raise
from it to cut the power there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetcore.atomic import fsync_dir
from fleetcore.errors import VersionError
from fleetcore.version import Version

CURRENT = "current"
PREVIOUS = "previous"
STATE = "state"
_STAGING = ".staging-"
_TRASH = ".trash-"

Checkpoint = Callable[[str], None]


def no_checkpoint(step: str) -> None:
    """The production checkpoint: nothing happens between steps."""


@dataclass(frozen=True)
class RoleLayout:
    root: Path
    name: str

    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def state_dir(self) -> Path:
        return self.dir / STATE

    @property
    def current(self) -> Path:
        return self.dir / CURRENT

    @property
    def previous(self) -> Path:
        return self.dir / PREVIOUS

    def version_dir(self, version: Version) -> Path:
        return self.dir / str(version)

    def staging_dir(self, version: Version) -> Path:
        return self.dir / f"{_STAGING}{version}"

    def _target(self, link: Path) -> Version | None:
        if not link.is_symlink():
            return None
        try:
            version = Version(str(link.readlink()))
        except VersionError:
            return None
        return version if self.version_dir(version).is_dir() else None

    def current_version(self) -> Version | None:
        return self._target(self.current)

    def previous_version(self) -> Version | None:
        return self._target(self.previous)

    def has_version(self, version: Version) -> bool:
        return self.version_dir(version).is_dir()


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` before it is published by a rename."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def begin_staging(layout: RoleLayout, version: Version) -> Path:
    """An empty staging directory for ``version``, discarding leftovers of a crashed attempt."""
    layout.dir.mkdir(parents=True, exist_ok=True)
    staging = layout.staging_dir(version)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def discard_stages(root: Path) -> list[Path]:
    """Remove every role's staging directories: what a failed or crashed attempt left.

    Only one stage is written at a time, under the manager's lock, so any found before a new
    one begins is garbage (three failed versions once left 301 MiB on /data).
    """
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for role_dir in root.iterdir():
        if role_dir.is_symlink() or not role_dir.is_dir():
            continue
        for entry in role_dir.iterdir():
            if entry.name.startswith(_STAGING) and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def publish_staging(layout: RoleLayout, staging: Path, version: Version) -> Path:
    """Rename the fully written ``staging`` directory to the version directory."""
    fsync_tree(staging)
    final = layout.version_dir(version)
    trash = layout.dir / f"{_TRASH}{version}"
    if final.exists():
        if trash.exists():
            shutil.rmtree(trash)
        final.rename(trash)
    staging.rename(final)
    fsync_dir(layout.dir)
    if trash.exists():
        shutil.rmtree(trash)
    return final


def point(link: Path, target: str, checkpoint: Checkpoint = no_checkpoint) -> None:
    """Make ``link`` name ``target`` atomically: new symlink, rename over, fsync directory."""
    temp = link.with_name(f".{link.name}.tmp")
    temp.unlink(missing_ok=True)
    temp.symlink_to(target)
    checkpoint(f"{link.name}-temp")
    temp.replace(link)
    fsync_dir(link.parent)
    checkpoint(f"{link.name}-linked")


def swap(layout: RoleLayout, version: Version, checkpoint: Checkpoint = no_checkpoint) -> None:
    """``previous`` := the running version, then ``current`` := ``version``."""
    old = layout.current_version()
    if old is not None and old != version:
        point(layout.previous, str(old), checkpoint)
    point(layout.current, str(version), checkpoint)


def prune(layout: RoleLayout) -> list[Version]:
    """Remove version directories that neither link names, and crash leftovers."""
    keep = {layout.current_version(), layout.previous_version()}
    removed = []
    for entry in layout.dir.iterdir():
        if entry.name.startswith((_STAGING, _TRASH)):
            shutil.rmtree(entry)
            continue
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            version = Version(entry.name)
        except VersionError:
            continue
        if version not in keep:
            shutil.rmtree(entry)
            removed.append(version)
    return removed
