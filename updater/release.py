"""Fetch an OS release through TUF and keep the verified files for the install on /data.

Trust decisions (kind, version, hardware, anti-rollback, index matches manifest) are pure
functions of the verified bytes; the TUF client and the directory are thin layers around them.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fleetcore.atomic import atomic_write
from fleetcore.delta import deltas_target
from fleetcore.errors import FormatError
from fleetcore.release import (
    Hardware,
    ImageName,
    Manifest,
    load_manifest,
    manifest_target,
)
from fleetcore.version import Version
from signing.client import TrustedTarget
from signing.errors import DownloadError, TargetMismatch, TargetNotFound
from signing.rollback import check_upgrade
from signing.targets import TargetCustom, TargetKind
from updater.chunkindex import CompactIndex, load_compact
from updater.deltas import DeltaPlan
from updater.errors import InstallError, VersionRejected

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
DELTAS_FILE = "deltas.json"


class TargetReader(Protocol):
    """The part of ``signing.client.ReleaseClient`` the updater uses."""

    def refresh(self) -> None: ...
    def get_target(self, name: str) -> TrustedTarget: ...
    def read(self, target: TrustedTarget) -> bytes: ...


@dataclass(frozen=True)
class Release:
    manifest: Manifest
    indexes: dict[ImageName, CompactIndex]
    floor: Version | None


def index_file(image: ImageName) -> str:
    return f"{image.value}.index.json"


def check_candidate(
    custom: TargetCustom | None,
    version: Version,
    *,
    hardware: Hardware,
    installed: Version,
    floor: Version | None,
    bad: list[Version],
) -> None:
    """Decide from verified metadata alone whether ``version`` may be installed."""
    if custom is None or custom.kind is not TargetKind.OS:
        raise VersionRejected(f"target for {version} carries no OS release metadata")
    if custom.version != version:
        raise VersionRejected(f"target for {version} is signed as version {custom.version}")
    if hardware not in custom.hardware:
        raise VersionRejected(
            f"release {version} is built for {', '.join(custom.hardware)}, this is {hardware}"
        )
    if version in bad:
        raise VersionRejected(
            f"release {version} failed its trial boots on this device and is marked bad",
            hint="publish a newer release",
        )
    check_upgrade(version, installed=installed, floor=floor)


def check_release(
    manifest: Manifest, indexes: dict[ImageName, CompactIndex], version: Version
) -> None:
    if manifest.version != version:
        raise VersionRejected(f"manifest of {version} describes version {manifest.version}")
    for image, index in indexes.items():
        entry = manifest.images[image]
        if index.image is not image or (index.image_size, index.image_sha256) != (
            entry.size,
            entry.sha256,
        ):
            raise TargetMismatch(f"chunk index {entry.index} does not describe the {image} image")


def fetch_release(
    reader: TargetReader,
    version: Version,
    dest: Path,
    *,
    hardware: Hardware,
    installed: Version,
    floor: Version | None,
    bad: list[Version],
) -> Release:
    """Refresh TUF, verify the release of ``version`` and store its files in ``dest``."""
    reader.refresh()
    target = reader.get_target(manifest_target(version))
    check_candidate(
        target.custom, version, hardware=hardware, installed=installed, floor=floor, bad=bad
    )
    manifest_bytes = reader.read(target)
    try:
        manifest = load_manifest(manifest_bytes)
        raw_indexes = {
            image: reader.read(reader.get_target(manifest.images[image].index))
            for image in ImageName
        }
        indexes = {image: load_compact(data) for image, data in raw_indexes.items()}
    except FormatError as err:
        raise InstallError(f"release {version} is signed but malformed: {err}") from err
    check_release(manifest, indexes, version)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for image, data in raw_indexes.items():
        atomic_write(dest / index_file(image), data)
    deltas = _fetch_deltas(reader, version, installed)
    if deltas is not None:
        atomic_write(dest / DELTAS_FILE, deltas)
    atomic_write(dest / MANIFEST_FILE, manifest_bytes)
    assert target.custom is not None
    return Release(manifest, indexes, target.custom.version_floor)


def _fetch_deltas(reader: TargetReader, version: Version, installed: Version) -> bytes | None:
    """The signed delta list from the running release to ``version``, if it was published and
    is well formed; otherwise the install fetches full chunks (ADR 0073)."""
    try:
        target = reader.get_target(deltas_target(version, installed))
    except TargetNotFound:
        return None
    try:
        data = reader.read(target)
        DeltaPlan.load(data)
    except (DownloadError, FormatError) as err:
        log.warning(
            "delta list from %s to %s refused: %s; fetching full chunks", installed, version, err
        )
        return None
    return data


def load_stored_deltas(src: Path) -> DeltaPlan | None:
    """The delta list :func:`fetch_release` kept, or None (none published, or unreadable)."""
    try:
        return DeltaPlan.load((src / DELTAS_FILE).read_bytes())
    except (OSError, FormatError):
        return None


def load_stored(src: Path, version: Version) -> tuple[Manifest, dict[ImageName, CompactIndex]]:
    """The verified release files kept in ``src`` by :func:`fetch_release`."""
    try:
        manifest = load_manifest((src / MANIFEST_FILE).read_bytes())
        indexes = {i: load_compact((src / index_file(i)).read_bytes()) for i in ImageName}
    except OSError as err:
        raise InstallError(f"the stored release in {src} is incomplete: {err.strerror}") from err
    except FormatError as err:
        raise InstallError(f"the stored release in {src} is corrupt: {err}") from err
    check_release(manifest, indexes, version)
    return manifest, indexes


def keep_as_seed(src: Path, slot_dir: Path) -> None:
    """After a slot verified, keep its chunk indexes as the seed for the next install."""
    slot_dir.mkdir(parents=True, exist_ok=True)
    for image in ImageName:
        atomic_write(slot_dir / index_file(image), (src / index_file(image)).read_bytes())


def load_seed_indexes(slot_dir: Path) -> list[CompactIndex]:
    """The chunk indexes of what a slot holds (``Roots.slot_dir``), those that are readable.

    Empty when unknown: then nothing is seeded. The indexes need no trust of their own: every
    seed chunk is re-hashed against the new release's signed index before it is used.
    """
    out = []
    for image in ImageName:
        try:
            out.append(load_compact((slot_dir / index_file(image)).read_bytes()))
        except (OSError, FormatError):
            continue
    return out
