"""The release repository on disk, in the standard TUF layout with consistent snapshots.

    REPO/metadata/N.root.json, root.json       every root version, and the newest
    REPO/metadata/N.targets.json, targets.json
    REPO/metadata/N.snapshot.json, snapshot.json
    REPO/metadata/timestamp.json
    REPO/targets/<dir>/<sha256>.<basename>      hash-prefixed target files
    REPO/chunks/xxxx/<sha256>.zst               the release chunk store (see fleetcore.release)

Any static web server, object store or CDN can serve the directory as it is. Files are written
so that a client reading mid-update sees a consistent repository: target files first, then
versioned metadata, and ``timestamp.json`` last, each atomically.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import Signer
from tuf.api.exceptions import LengthOrHashMismatchError, UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from fleetcore.atomic import atomic_open, atomic_write
from fleetcore.errors import FormatError
from fleetcore.release import (
    MAX_CHUNK_SIZE,
    ImageName,
    Manifest,
    chunk_path,
    index_target,
    load_index,
    load_manifest,
    manifest_target,
)
from fleetcore.zstdcap import ZstdBombError, decompress_capped
from signing.errors import RepositoryError
from signing.keys import KeyStore
from signing.targets import TargetCustom, TargetKind, TargetSpec, check_target_name

ROLES = ("root", "targets", "snapshot", "timestamp")
_SERIALIZER = JSONSerializer(compact=False)
_COPY_SIZE = 1 << 20


@dataclass(frozen=True)
class Lifetimes:
    """How long each role's metadata stays valid after signing.

    Timestamp and snapshot are short because the Overlord re-signs them; a device that stops
    seeing fresh ones notices a freeze attack within a day.
    """

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=365)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def of(self, role: str) -> timedelta:
        value: timedelta = getattr(self, role)
        return value


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).replace(microsecond=0)


class Repository:
    """Load, change and save one repository's metadata. Not thread-safe; one writer at a time."""

    def __init__(self, path: Path, *, lifetimes: Lifetimes | None = None) -> None:
        self.path = path
        self.metadata_dir = path / "metadata"
        self.targets_dir = path / "targets"
        self.lifetimes = lifetimes or Lifetimes()

    def exists(self) -> bool:
        return (self.metadata_dir / "root.json").exists()

    def load(self, role: str) -> Metadata[Any]:
        path = self.metadata_dir / f"{role}.json"
        try:
            return Metadata.from_file(str(path))
        except FileNotFoundError as err:
            raise RepositoryError(
                f"{self.path} is not a TUF repository: {path.name} missing",
                hint="create one with fleet-sign init",
            ) from err
        except (OSError, DeserializationError) as err:
            raise RepositoryError(f"cannot load {path}: {err}") from err

    def root(self) -> Metadata[Root]:
        return self.load("root")

    def sign_and_save(
        self,
        md: Metadata[Any],
        signers: Iterable[Signer],
        *,
        now: datetime | None = None,
        bump: bool = True,
    ) -> None:
        """Bump version and expiry, sign with ``signers`` and write the role's files."""
        role = md.signed.type
        if bump:
            md.signed.version += 1
        md.signed.expires = _now(now) + self.lifetimes.of(role)
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)
        self._check_threshold(md)
        data = md.to_bytes(_SERIALIZER)
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        if role != "timestamp":
            atomic_write(self.metadata_dir / f"{md.signed.version}.{role}.json", data)
        atomic_write(self.metadata_dir / f"{role}.json", data)

    def _check_threshold(self, md: Metadata[Any]) -> None:
        """Refuse to write metadata that clients would reject: a signing mistake, caught early."""
        role = md.signed.type
        root = md.signed if isinstance(md.signed, Root) else self.root().signed
        try:
            root.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as err:
            raise RepositoryError(f"{role} metadata would not verify: {err}") from err

    def store_target(self, spec: TargetSpec) -> TargetFile:
        """Copy a target file to its hash-prefixed path and describe it."""
        name = check_target_name(spec.name)
        try:
            info = TargetFile.from_file(name, str(spec.path), ["sha256"])
        except OSError as err:
            raise RepositoryError(f"cannot read target file {spec.path}: {err.strerror}") from err
        if spec.custom is not None:
            info.unrecognized_fields["custom"] = spec.custom.to_custom()
        folder, _, base = name.rpartition("/")
        dest = self.targets_dir / folder / f"{info.hashes['sha256']}.{base}"
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            with spec.path.open("rb") as src, atomic_open(dest) as out:
                shutil.copyfileobj(src, out, _COPY_SIZE)
        return info

    def publish_targets(self, targets: Metadata[Any], keys: KeyStore, now: datetime | None) -> None:
        """After targets changed: write snapshot and timestamp that point at it."""
        snapshot = self.load("snapshot")
        assert isinstance(snapshot.signed, Snapshot)
        snapshot.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
        self.sign_and_save(snapshot, keys.get("snapshot"), now=now)
        self.save_timestamp(snapshot, keys, now)

    def save_timestamp(self, snapshot: Metadata[Any], keys: KeyStore, now: datetime | None) -> None:
        fresh = not (self.metadata_dir / "timestamp.json").exists()
        timestamp = Metadata(Timestamp()) if fresh else self.load("timestamp")
        assert isinstance(timestamp.signed, Timestamp)
        timestamp.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)
        self.sign_and_save(timestamp, keys.get("timestamp"), now=now, bump=not fresh)


def init_repository(
    repo: Path,
    keys: KeyStore,
    *,
    root_threshold: int = 1,
    lifetimes: Lifetimes | None = None,
    now: datetime | None = None,
) -> None:
    """Create an empty repository signed by ``keys``; refuses to overwrite one."""
    store = Repository(repo, lifetimes=lifetimes)
    if store.exists():
        raise RepositoryError(f"{repo} already holds a TUF repository")
    root_signers = keys.get("root")
    if not 1 <= root_threshold <= len(root_signers):
        raise RepositoryError(
            f"root threshold {root_threshold} needs between 1 and {len(root_signers)} root keys"
        )
    root = Root(version=1, consistent_snapshot=True)
    for role in ROLES:
        for signer in keys.get(role):
            root.add_key(signer.public_key, role)
    root.roles["root"].threshold = root_threshold
    store.targets_dir.mkdir(parents=True, exist_ok=True)
    (repo / "chunks").mkdir(exist_ok=True)
    store.sign_and_save(Metadata(root), root_signers, now=now, bump=False)
    store.sign_and_save(Metadata(Targets()), keys.get("targets"), now=now, bump=False)
    snapshot = Metadata(Snapshot(meta={"targets.json": MetaFile(version=1)}))
    store.sign_and_save(snapshot, keys.get("snapshot"), now=now, bump=False)
    store.save_timestamp(snapshot, keys, now)


def add_targets(
    repo: Path,
    keys: KeyStore,
    targets: list[TargetSpec],
    *,
    lifetimes: Lifetimes | None = None,
    now: datetime | None = None,
) -> Metadata[Any]:
    """Add or replace targets in one new targets version, then re-sign snapshot and timestamp."""
    if not targets:
        raise RepositoryError("no targets to add")
    store = Repository(repo, lifetimes=lifetimes)
    md = store.load("targets")
    assert isinstance(md.signed, Targets)
    for spec in targets:
        info = store.store_target(spec)
        md.signed.targets[info.path] = info
    store.sign_and_save(md, keys.get("targets"), now=now)
    store.publish_targets(md, keys, now)
    return md


def refresh_timestamp(
    repo: Path, keys: KeyStore, *, lifetimes: Lifetimes | None = None, now: datetime | None = None
) -> None:
    """Re-sign snapshot and timestamp with the online keys (the Overlord's schedule)."""
    store = Repository(repo, lifetimes=lifetimes)
    snapshot = store.load("snapshot")
    store.sign_and_save(snapshot, keys.get("snapshot"), now=now)
    store.save_timestamp(snapshot, keys, now)


def publish_release(
    repo: Path, keys: KeyStore, release_dir: Path, *, now: datetime | None = None
) -> Manifest:
    """Publish a ``fleet-image assemble`` release: manifest and indexes as targets, chunks copied.

    Every chunk the indexes name must be present and hash-correct before anything is signed,
    so a broken chunk store is caught on the build host, not on a thousand devices.
    """
    try:
        manifest_bytes = (release_dir / "manifest.json").read_bytes()
        manifest = load_manifest(manifest_bytes)
    except OSError as err:
        raise RepositoryError(f"{release_dir} has no readable manifest.json") from err
    except FormatError as err:
        raise RepositoryError(str(err)) from err
    specs = []
    for image in ImageName:
        entry = manifest.images[image]
        index_path = release_dir / f"{image.value}.index.json"
        try:
            index = load_index(index_path.read_bytes())
        except OSError as err:
            raise RepositoryError(f"{release_dir} lacks {index_path.name}") from err
        except FormatError as err:
            raise RepositoryError(f"{index_path}: {err}") from err
        if (index.image_size, index.image_sha256) != (entry.size, entry.sha256):
            raise RepositoryError(
                f"{index_path.name} does not describe the manifest's {image} image"
            )
        if entry.index != index_target(manifest.version, image):
            raise RepositoryError(
                f"manifest names index {entry.index!r}, expected "
                f"{index_target(manifest.version, image)!r}"
            )
        _copy_chunks(release_dir, repo, (c.sha256 for c in index.chunks))
        specs.append(TargetSpec(index_path, entry.index))
    system = manifest.images[ImageName.SYSTEM]
    custom = TargetCustom(
        kind=TargetKind.OS,
        version=manifest.version,
        hardware=manifest.hardware,
        uncompressed_size=system.size,
        uncompressed_sha256=system.sha256,
    )
    specs.append(
        TargetSpec(release_dir / "manifest.json", manifest_target(manifest.version), custom)
    )
    add_targets(repo, keys, specs, now=now)
    return manifest


def _copy_chunks(release_dir: Path, repo: Path, digests: Iterable[str]) -> None:
    for digest in dict.fromkeys(digests):
        if (repo / chunk_path(digest)).exists():
            continue
        src = release_dir / chunk_path(digest)
        try:
            data = src.read_bytes()
        except OSError as err:
            raise RepositoryError(f"chunk {digest} is missing from {release_dir}") from err
        store_chunk(repo, digest, data)


def store_chunk(repo: Path, digest: str, data: bytes) -> bool:
    """Verify one compressed chunk against its digest and add it to the chunk store.

    Returns False when the store already had it. The Overlord's publish API uses this too.
    """
    dest = repo / chunk_path(digest)
    if dest.exists():
        return False
    try:
        # Capped: an upload that decodes past the largest chunk an index may list is a bomb.
        plain = decompress_capped(data, limit=MAX_CHUNK_SIZE, what=f"chunk {digest}")
    except ZstdBombError as err:
        raise RepositoryError(str(err)) from err
    if hashlib.sha256(plain).hexdigest() != digest:
        raise RepositoryError(f"chunk {digest} does not match its hash")
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, data)
    return True


def accept_signed_targets(
    repo: Path,
    keys: KeyStore,
    signed_targets: bytes,
    uploads: Mapping[str, Path],
    *,
    now: datetime | None = None,
) -> Metadata[Any]:
    """Take targets metadata signed offline (in CI) plus the files it lists, verified.

    The Overlord calls this from its publish API with only the online keys: it checks the
    signature against root's targets keys, that the version moves forward, and that every new
    target file matches its signed length and hashes, before it re-signs snapshot and
    timestamp. Nothing is written unless all of that holds.
    """
    store = Repository(repo)
    try:
        md = Metadata.from_bytes(signed_targets)
    except DeserializationError as err:
        raise RepositoryError(
            f"uploaded targets metadata is not valid TUF metadata: {err}"
        ) from err
    if not isinstance(md.signed, Targets):
        raise RepositoryError(f"uploaded metadata is {md.signed.type}, expected targets")
    try:
        store.root().signed.verify_delegate("targets", md.signed_bytes, md.signatures)
    except UnsignedMetadataError as err:
        raise RepositoryError(
            f"uploaded targets metadata is not signed by the targets key: {err}"
        ) from err
    current = store.load("targets").signed.version
    if md.signed.version <= current:
        raise RepositoryError(
            f"uploaded targets version {md.signed.version} does not move past {current}"
        )
    if md.signed.is_expired(_now(now)):
        raise RepositoryError("uploaded targets metadata has already expired")
    pending = []
    for name, info in md.signed.targets.items():
        check_target_name(name)
        folder, _, base = name.rpartition("/")
        dest = store.targets_dir / folder / f"{info.hashes.get('sha256')}.{base}"
        if dest.exists():
            continue
        if name not in uploads:
            raise RepositoryError(
                f"target {name} is neither uploaded nor already in the repository"
            )
        try:
            with uploads[name].open("rb") as handle:
                info.verify_length_and_hashes(handle)
        except LengthOrHashMismatchError as err:
            raise RepositoryError(
                f"uploaded {name} does not match its signed hashes: {err}"
            ) from err
        pending.append((uploads[name], dest))
    for src, dest in pending:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with src.open("rb") as handle, atomic_open(dest) as out:
            shutil.copyfileobj(handle, out, _COPY_SIZE)
    data = md.to_bytes(_SERIALIZER)
    atomic_write(store.metadata_dir / f"{md.signed.version}.targets.json", data)
    atomic_write(store.metadata_dir / "targets.json", data)
    store.publish_targets(md, keys, now)
    return md


def rotate_keys(
    repo: Path,
    keys: KeyStore,
    role: str,
    *,
    passphrase: bytes | None = None,
    new_key: Callable[[], Ed25519PrivateKey] = Ed25519PrivateKey.generate,
    lifetimes: Lifetimes | None = None,
    now: datetime | None = None,
) -> int:
    """Replace ``role``'s keys with new ones; returns the new root version.

    The new root is signed by the old root keys (so devices trust it) and, for a root
    rotation, by the new ones too (so it is valid on its own). The rotated role's metadata is
    then re-signed with its new key, and snapshot and timestamp after it.
    """
    if role not in ROLES:
        raise RepositoryError(f"unknown role {role!r}", hint=f"choose one of {', '.join(ROLES)}")
    store = Repository(repo, lifetimes=lifetimes)
    root_md = store.root()
    root = root_md.signed
    old_root_signers = list(keys.get("root"))
    old_ids = list(root.roles[role].keyids)
    count = len(old_ids)
    new_signers = keys.replace(role, count, passphrase, new_key=new_key)
    for keyid in old_ids:
        root.revoke_key(keyid, role)
    for signer in new_signers:
        root.add_key(signer.public_key, role)
    root.version += 1
    root.expires = _now(now) + store.lifetimes.root
    root_md.signatures.clear()
    for signer in old_root_signers + (new_signers if role == "root" else []):
        root_md.sign(signer, append=True)
    try:
        previous = store.root().signed
        previous.verify_delegate("root", root_md.signed_bytes, root_md.signatures)
        root.verify_delegate("root", root_md.signed_bytes, root_md.signatures)
    except UnsignedMetadataError as err:
        raise RepositoryError(f"rotated root would not verify: {err}") from err
    data = root_md.to_bytes(_SERIALIZER)
    atomic_write(store.metadata_dir / f"{root.version}.root.json", data)
    atomic_write(store.metadata_dir / "root.json", data)
    if role == "targets":
        targets = store.load("targets")
        store.sign_and_save(targets, keys.get("targets"), now=now)
        store.publish_targets(targets, keys, now)
    elif role in ("snapshot", "timestamp"):
        refresh_timestamp(repo, keys, lifetimes=lifetimes, now=now)
    return root.version
