"""Releases read from the served repository's ``targets.json`` (signed, so authoritative)."""

from __future__ import annotations

from pathlib import Path

from tuf.api.exceptions import RepositoryError as TufRepositoryError
from tuf.api.metadata import Metadata, Targets
from tuf.api.serialization import DeserializationError

from fleetcore.release import BOOTLOADER_FILES, bootloader_target, manifest_target, role_target
from fleetcore.version import Version
from overlord.errors import NotFound, RepositoryMissing
from overlord.releases.models import Release
from overlord.releases.schemas import ReleasePublic
from signing.errors import VerificationError
from signing.targets import TargetCustom, TargetKind


def list_releases(
    *, repo_dir: Path, kind: TargetKind | None = None, include_pruned: bool = False
) -> list[Release]:
    """Every target with Metrica custom metadata, newest version first within each name.

    A release whose file garbage collection deleted is still in the signed metadata (only the
    offline targets key can change that) but is left out unless ``include_pruned``: nothing
    can be installed from it, so it must not be offered for a rollout.
    """
    path = repo_dir / "metadata" / "targets.json"
    if not path.exists():
        raise RepositoryMissing(
            f"no TUF repository at {repo_dir}",
            hint="publish one with fleet-sign init and the publish API",
        )
    try:
        md = Metadata[Targets].from_file(str(path))
    except (OSError, DeserializationError, TufRepositoryError) as err:
        raise RepositoryMissing(f"{path} is unreadable: {err}") from err
    releases = []
    for name, info in md.signed.targets.items():
        try:
            custom = TargetCustom.from_custom(info.custom, target=name)
        except VerificationError:
            continue
        if custom is None:
            continue
        if custom.kind is TargetKind.OS:
            release_name = "os"
            if name != manifest_target(custom.version):
                continue
        elif custom.kind is TargetKind.BOOTLOADER:
            release_name = "bootloader"  # one release per family: its image target stands for it
            family = custom.hardware[0]
            if len(custom.hardware) != 1 or name != bootloader_target(
                family, custom.version, BOOTLOADER_FILES[0]
            ):
                continue
        else:
            parts = name.split("/")
            if len(parts) != 3 or name != role_target(parts[1], custom.version):
                continue
            release_name = parts[1]
        if kind is not None and custom.kind is not kind:
            continue
        folder, _, base = name.rpartition("/")
        stored = repo_dir / "targets" / folder / f"{info.hashes.get('sha256')}.{base}"
        if not include_pruned and not stored.is_file():
            continue
        releases.append(
            Release(
                kind=custom.kind,
                name=release_name,
                version=custom.version,
                target=name,
                length=info.length,
                sha256=info.hashes.get("sha256", ""),
                uncompressed_size=custom.uncompressed_size,
                hardware=tuple(h.value for h in custom.hardware),
                version_floor=custom.version_floor,
            )
        )
    releases.sort(key=lambda r: (r.kind, r.name, r.version), reverse=True)
    return releases


def find_release(*, repo_dir: Path, kind: TargetKind, name: str, version: Version) -> Release:
    for release in list_releases(repo_dir=repo_dir, kind=kind):
        if release.name == name and release.version == version:
            return release
    raise NotFound(f"no signed {kind.value} release {name} {version} in the repository")


def to_public(release: Release) -> ReleasePublic:
    return ReleasePublic(
        kind=release.kind,
        name=release.name,
        version=str(release.version),
        target=release.target,
        length=release.length,
        sha256=release.sha256,
        uncompressed_size=release.uncompressed_size,
        hardware=list(release.hardware),
        version_floor=str(release.version_floor) if release.version_floor else None,
    )
