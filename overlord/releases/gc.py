"""Garbage collection of the release repository: what to keep is decided here, purely.

The repository only grows otherwise: every timestamp refresh writes a new versioned snapshot,
every publish a new targets version, and releases and their chunks stay forever. What a
client can still need, and so is kept:

- every ``N.root.json`` (a device with an old root walks them one by one);
- the current ``timestamp``, ``snapshot`` and ``targets`` and the versioned files they
  reference; versioned snapshots younger than the metadata window (a timestamp lives a day,
  so an older snapshot is reachable from no valid timestamp) and the targets versions those
  reference;
- the releases any device runs, is assigned (desired version, an unfinished rollout) or may
  fall back to (the version it reported before its current one: its other slot), plus the
  newest ``keep_last`` per OS and per role;
- every chunk an index of a kept release names, whatever else referenced it, and every diff
  a delta list of a kept release names.

Target files of other releases, unreferenced target files, chunks and diffs, and older versioned
metadata are deleted. The signed targets metadata still lists a pruned release (only the
offline targets key can change it); the Overlord stops offering it (see service.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from tuf.api.exceptions import RepositoryError as TufRepositoryError
from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from fleetcore.delta import DELTAS_DIR, delta_path, is_deltas_target, load_deltas
from fleetcore.errors import FormatError
from fleetcore.release import load_index
from overlord import leases
from overlord.audit import service as audit
from overlord.audit.models import AuditAction, AuditObject
from overlord.audit.service import Actor
from overlord.db import unit_of_work
from overlord.devices.models import Device, DeviceHeartbeat
from overlord.errors import RepositoryMissing
from overlord.releases.models import Release
from overlord.releases.schemas import GC_FILES_SHOWN, GcFile, GcResult
from overlord.releases.service import list_releases
from overlord.rollouts.models import TERMINAL_STATES, DeploymentRollout, ReleaseKind
from overlord.tuf.models import CHUNKS_DIR, METADATA_DIR, TARGETS_DIR, WRITE_LEASE
from signing.targets import TargetKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InUse:
    """Release versions the fleet needs: OS versions and (role, version) pairs."""

    os_versions: frozenset[str]
    roles: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Doomed:
    """A file garbage collection deletes (or would, on a dry run)."""

    path: Path
    size: int


@dataclass(frozen=True)
class GcPlan:
    kept_releases: tuple[str, ...]
    dropped_releases: tuple[str, ...]
    files: tuple[Doomed, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def in_use(session: Session) -> InUse:
    """What devices run, are assigned, or may fall back to, and what rollouts still deliver."""
    os_versions: set[str] = set()
    roles: set[tuple[str, str]] = set()
    for image, desired, running_roles, desired_roles in session.execute(
        select(Device.image_version, Device.desired_os_version, Device.roles, Device.desired_roles)
    ):
        os_versions.add(image)
        if desired:
            os_versions.add(desired)
        roles.update(
            (r["name"], r["version"])
            for r in running_roles
            if isinstance(r, dict) and r.get("version")
        )
        roles.update(desired_roles.items())
    os_versions |= _fallback_versions(session)
    for kind, role, version in session.execute(
        select(
            DeploymentRollout.kind, DeploymentRollout.role_name, DeploymentRollout.version
        ).where(DeploymentRollout.state.not_in(TERMINAL_STATES))
    ):
        if kind is ReleaseKind.OS:
            os_versions.add(version)
        else:  # a role by its name; a bootloader release is named "bootloader"
            roles.add((role or kind.value, version))
    return InUse(frozenset(os_versions), frozenset(roles))


def _fallback_versions(session: Session) -> set[str]:
    """Per device, the newest version it reported other than its current one: the image in
    its other slot (bounded by heartbeat retention)."""
    last_seen = (
        select(
            DeviceHeartbeat.device_id,
            DeviceHeartbeat.image_version,
            func.max(DeviceHeartbeat.received_at).label("at"),
        )
        .join(Device, Device.id == DeviceHeartbeat.device_id)
        .where(DeviceHeartbeat.image_version != Device.image_version)
        .group_by(DeviceHeartbeat.device_id, DeviceHeartbeat.image_version)
    )
    newest: dict[str, tuple[Any, str]] = {}
    for device_id, version, at in session.execute(last_seen):
        if device_id not in newest or at > newest[device_id][0]:
            newest[device_id] = (at, version)
    return {version for _at, version in newest.values()}


def plan(
    *, repo_dir: Path, in_use: InUse, keep_last: int, metadata_window: timedelta, now: datetime
) -> GcPlan:
    """Decide what to delete; reads the repository, changes nothing."""
    metadata_dir = repo_dir / METADATA_DIR
    current_targets = _load(metadata_dir / "targets.json", Targets)
    current_snapshot = _load(metadata_dir / "snapshot.json", Snapshot)
    timestamp = _load(metadata_dir / "timestamp.json", Timestamp)

    kept, dropped = _split_releases(
        list_releases(repo_dir=repo_dir, include_pruned=True), in_use, keep_last
    )
    dropped_names = {
        name
        for name in current_targets.targets
        if any(_belongs(name, release) for release in dropped)
    }

    doomed: list[Path] = []
    cutoff = now.timestamp() - metadata_window.total_seconds()
    snapshot_keep = {current_snapshot.version, timestamp.snapshot_meta.version}
    retained_snapshots = []
    for version, path in _versioned(metadata_dir, "snapshot"):
        if version in snapshot_keep or path.stat().st_mtime >= cutoff:
            retained_snapshots.append(path)
        else:
            doomed.append(path)
    targets_keep = {current_targets.version}
    for path in retained_snapshots:
        meta = _load(path, Snapshot).meta.get("targets.json")
        if meta is not None:
            targets_keep.add(meta.version)
    retained_targets = [current_targets]
    for version, path in _versioned(metadata_dir, "targets"):
        if version in targets_keep:
            retained_targets.append(_load(path, Targets))
        else:
            doomed.append(path)

    live_files: set[Path] = set()
    indexes: set[Path] = set()
    delta_lists: set[Path] = set()
    for targets in retained_targets:
        for name, info in targets.targets.items():
            if name in dropped_names:
                continue
            folder, _, base = name.rpartition("/")
            path = repo_dir / TARGETS_DIR / folder / f"{info.hashes.get('sha256')}.{base}"
            live_files.add(path)
            if name.endswith(".index.json"):
                indexes.add(path)
            elif is_deltas_target(name):
                delta_lists.add(path)
    doomed += (p for p in _files(repo_dir / TARGETS_DIR) if p not in live_files)

    live_chunks = _chunks_named_by(indexes)
    doomed += (
        p
        for p in _files(repo_dir / CHUNKS_DIR)
        if p.name.endswith(".zst") and p.name.removesuffix(".zst") not in live_chunks
    )
    live_diffs = _diffs_named_by(delta_lists)
    doomed += (
        p
        for p in _files(repo_dir / DELTAS_DIR)
        if p.relative_to(repo_dir).as_posix() not in live_diffs
    )
    return GcPlan(
        kept_releases=tuple(r.target for r in kept),
        dropped_releases=tuple(r.target for r in dropped),
        files=tuple(Doomed(p, p.stat().st_size) for p in sorted(doomed)),
    )


def collect(
    *,
    sessions: sessionmaker[Session],
    repo_dir: Path,
    keep_last: int,
    metadata_window: timedelta,
    holder: str,
    dry_run: bool,
    actor: Actor,
) -> GcPlan:
    """Plan and (unless ``dry_run``) delete, holding the repository's write lease.

    The lease is the one publishing holds: a publish stores its chunks before its targets
    metadata names them, so a collection running between the two would delete them. A
    collection that deleted something is audited right after, in the lease (a dry run
    changes nothing and is not).
    """
    with leases.held(sessions, name=WRITE_LEASE, holder=holder, ttl_s=600, wait_s=30):
        with unit_of_work(sessions) as session:
            needed = in_use(session)
        gc_plan = plan(
            repo_dir=repo_dir,
            in_use=needed,
            keep_last=keep_last,
            metadata_window=metadata_window,
            now=datetime.now(UTC),
        )
        if not dry_run:
            apply(gc_plan)
            with unit_of_work(sessions) as session:
                _record(session, actor, gc_plan, keep_last=keep_last)
    return gc_plan


_RELEASES_RECORDED = 100  # dropped releases an audit entry names; the count is always there


def _record(session: Session, actor: Actor, gc_plan: GcPlan, *, keep_last: int) -> None:
    audit.record(
        session,
        actor,
        AuditAction.RELEASE_GC,
        object_type=AuditObject.REPOSITORY,
        after={
            "keep_last": keep_last,
            "dropped_releases": list(gc_plan.dropped_releases[:_RELEASES_RECORDED]),
            "dropped_release_count": len(gc_plan.dropped_releases),
            "deleted_files": len(gc_plan.files),
            "deleted_bytes": gc_plan.total_bytes,
        },
    )


def apply(gc_plan: GcPlan) -> None:
    """Delete what ``plan`` chose. Metadata first is not needed: nothing kept refers to it."""
    for doomed in gc_plan.files:
        doomed.path.unlink(missing_ok=True)
    log.info(
        "release gc deleted %d files (%d bytes); releases dropped: %s",
        len(gc_plan.files),
        gc_plan.total_bytes,
        ", ".join(gc_plan.dropped_releases) or "none",
    )


def _split_releases(
    releases: list[Release], in_use: InUse, keep_last: int
) -> tuple[list[Release], list[Release]]:
    """Releases arrive newest first within each (kind, name); keep the first ``keep_last``."""
    kept: list[Release] = []
    dropped: list[Release] = []
    seen: dict[tuple[TargetKind, str], int] = {}
    for release in releases:
        rank = seen.get((release.kind, release.name), 0)
        seen[(release.kind, release.name)] = rank + 1
        needed = (
            str(release.version) in in_use.os_versions
            if release.kind is TargetKind.OS
            else (release.name, str(release.version)) in in_use.roles
        )
        (kept if needed or rank < keep_last else dropped).append(release)
    return kept, dropped


def _belongs(name: str, release: Release) -> bool:
    """An OS release is its manifest and its indexes (``os/<version>/``), a bootloader release
    the three files beside its image (``bootloader/<family>/<version>/``); a role its bundle."""
    if release.kind is TargetKind.OS:
        return name.startswith(f"os/{release.version}/")
    if release.kind is TargetKind.BOOTLOADER:
        return name.startswith(release.target.rpartition("/")[0] + "/")
    return name == release.target


def _chunks_named_by(indexes: Iterable[Path]) -> set[str]:
    return _named_by(indexes, "index", lambda data: (c.sha256 for c in load_index(data).chunks))


def _diffs_named_by(delta_lists: Iterable[Path]) -> set[str]:
    return _named_by(
        delta_lists,
        "delta list",
        lambda data: (delta_path(d.target, d.bases) for d in load_deltas(data).deltas),
    )


def _named_by(
    files: Iterable[Path], what: str, names: Callable[[bytes], Iterable[str]]
) -> set[str]:
    """What the given index or delta-list files name (chunk digests, diff paths)."""
    named: set[str] = set()
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # pruned earlier: what it named was judged then, shared parts by others
        except OSError as err:
            raise RepositoryMissing(f"cannot read {what} {path}: {err.strerror}") from err
        try:
            named.update(names(data))
        except FormatError as err:
            # What it names is unknown, so nothing it could name can be judged unreferenced.
            raise RepositoryMissing(f"{what} {path} is unreadable, nothing deleted: {err}") from err
    return named


def _versioned(metadata_dir: Path, role: str) -> Iterator[tuple[int, Path]]:
    for path in metadata_dir.glob(f"*.{role}.json"):
        number = path.name.split(".", 1)[0]
        if number.isdigit():
            yield int(number), path


def _files(folder: Path) -> Iterator[Path]:
    return (p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else iter(())


def _load(path: Path, kind: type[Any]) -> Any:
    try:
        md = Metadata.from_file(str(path))
    except (OSError, DeserializationError, TufRepositoryError) as err:
        raise RepositoryMissing(f"{path} is unreadable: {err}") from err
    if not isinstance(md.signed, kind):
        raise RepositoryMissing(f"{path} holds {md.signed.type} metadata")
    return md.signed


def to_result(gc_plan: GcPlan, *, repo_dir: Path, dry_run: bool) -> GcResult:
    return GcResult(
        dry_run=dry_run,
        kept_releases=list(gc_plan.kept_releases),
        dropped_releases=list(gc_plan.dropped_releases),
        deleted_files=len(gc_plan.files),
        deleted_bytes=gc_plan.total_bytes,
        files=[
            GcFile(path=str(f.path.relative_to(repo_dir)), size=f.size)
            for f in gc_plan.files[:GC_FILES_SHOWN]
        ],
    )
