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

from fleetcore import strictjson
from fleetcore.atomic import atomic_open, atomic_write
from fleetcore.errors import FormatError
from fleetcore.release import (
    MAX_CHUNK_SIZE,
    Chunk,
    ImageName,
    Manifest,
    chunk_path,
    index_target,
    load_index,
    load_manifest,
    manifest_target,
)
from fleetcore.zstdcap import ZstdBombError, decompress_capped, decompress_exact
from signing.deltas import delta_specs
from signing.errors import RepositoryError
from signing.keys import ONLINE_ROLES, KeyStore
from signing.targets import TargetCustom, TargetKind, TargetSpec, check_target_name

ROLES = ("root", "targets", "snapshot", "timestamp")
_SERIALIZER = JSONSerializer(compact=False)
_COPY_SIZE = 1 << 20
# Root or targets metadata larger than this is not one a CI job signed for this fleet.
MAX_UPLOADED_METADATA = 32 << 20


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
    sizes: dict[str, int] = {}
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
        _copy_chunks(release_dir, repo, index.chunks)
        sizes.update((c.sha256, c.size) for c in index.chunks)
        specs.append(TargetSpec(index_path, entry.index))
    specs += delta_specs(release_dir, repo, manifest, sizes)
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


def _copy_chunks(release_dir: Path, repo: Path, chunks: Iterable[Chunk]) -> None:
    for digest, size in dict((c.sha256, c.size) for c in chunks).items():
        if (repo / chunk_path(digest)).exists():
            continue
        src = release_dir / chunk_path(digest)
        try:
            data = src.read_bytes()
        except OSError as err:
            raise RepositoryError(f"chunk {digest} is missing from {release_dir}") from err
        store_chunk(repo, digest, data, size=size)


def store_chunk(repo: Path, digest: str, data: bytes, *, size: int | None = None) -> bool:
    """Verify one compressed chunk against its digest and add it to the chunk store.

    ``size`` is the chunk's length from its index when the caller knows it: the frame must
    decode to exactly that. Otherwise the output is capped at :data:`MAX_CHUNK_SIZE`. Either
    way a small upload that declares or expands to gigabytes is refused after at most the cap
    (python-zstandard alone trusts the frame's declared size). Returns False when the store
    already had it. The Overlord's publish API uses this too.
    """
    dest = repo / chunk_path(digest)
    if dest.exists():
        return False
    what = f"chunk {digest}"
    if size is not None and not 0 < size <= MAX_CHUNK_SIZE:
        raise RepositoryError(f"{what} is {size} bytes; chunks are at most {MAX_CHUNK_SIZE}")
    try:
        if size is None:
            plain = decompress_capped(data, limit=MAX_CHUNK_SIZE, what=what)
        else:
            plain = decompress_exact(data, size, what=what)
    except ZstdBombError as err:
        raise RepositoryError(str(err)) from err
    if hashlib.sha256(plain).hexdigest() != digest:
        raise RepositoryError(f"{what} does not match its hash")
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, data)
    return True


def _parse_signed(data: bytes, role: str) -> Metadata[Any]:
    """Uploaded metadata, parsed strictly: a duplicated key would let two readers disagree."""
    try:
        strictjson.loads(data, what=f"uploaded {role} metadata", max_bytes=MAX_UPLOADED_METADATA)
        md = Metadata.from_bytes(data)
    except FormatError as err:
        raise RepositoryError(str(err)) from err
    except DeserializationError as err:
        raise RepositoryError(f"uploaded {role} metadata is not valid TUF metadata: {err}") from err
    if md.signed.type != role:
        raise RepositoryError(f"uploaded metadata is {md.signed.type}, expected {role}")
    return md


def check_new_root(trusted: Root, signed_root: bytes, now: datetime) -> Metadata[Root]:
    """Verify an uploaded root the way a device will (python-tuf's root update).

    It must be signed by the threshold of the trusted root's keys (devices holding that root
    accept it) and by the threshold of its own keys (it stands on its own), and its version
    must be exactly the next one: clients walk roots one version at a time.
    """
    md: Metadata[Root] = _parse_signed(signed_root, "root")
    new = md.signed
    if new.version != trusted.version + 1:
        raise RepositoryError(
            f"uploaded root version {new.version} is not the next one ({trusted.version + 1})",
            hint="publish each root version in turn",
        )
    try:
        trusted.verify_delegate("root", md.signed_bytes, md.signatures)
    except UnsignedMetadataError as err:
        raise RepositoryError(
            f"uploaded root {new.version} is not signed by the threshold of the current root "
            f"{trusted.version}: {err}"
        ) from err
    try:
        new.verify_delegate("root", md.signed_bytes, md.signatures)
    except UnsignedMetadataError as err:
        raise RepositoryError(
            f"uploaded root {new.version} is not signed by the threshold of its own root keys: "
            f"{err}"
        ) from err
    if new.is_expired(now):
        # python-tuf lets an intermediate root be expired but not the newest: devices would stop.
        raise RepositoryError(f"uploaded root {new.version} has already expired")
    if not new.consistent_snapshot:
        raise RepositoryError("uploaded root turns consistent snapshots off; the layout needs them")
    return md


def _check_online_keys(root: Root, keys: KeyStore) -> None:
    """Refuse a root whose snapshot or timestamp keys are not the ones this publisher holds.

    Checked before anything is written: otherwise the new root would be served with a
    snapshot and timestamp nobody can re-sign, and every device would stop at them.
    """
    for role in ONLINE_ROLES:
        held = {signer.public_key.keyid for signer in keys.get(role)}
        named = set(root.roles[role].keyids)
        if len(held & named) < root.roles[role].threshold:
            raise RepositoryError(
                f"the new root names {role} keys this publisher does not hold",
                hint="install the rotated KEYDIR/online/ keys on the Overlord and restart it "
                "before publishing the new root",
            )


def _check_targets(
    store: Repository, root: Root, md: Metadata[Any], uploads: Mapping[str, Path], now: datetime
) -> list[tuple[Path, Path]]:
    """Verify uploaded targets metadata against ``root``; returns the target files to copy."""
    try:
        root.verify_delegate("targets", md.signed_bytes, md.signatures)
    except UnsignedMetadataError as err:
        raise RepositoryError(
            f"uploaded targets metadata is not signed by the targets key: {err}"
        ) from err
    current = store.load("targets").signed.version
    if md.signed.version <= current:
        raise RepositoryError(
            f"uploaded targets version {md.signed.version} does not move past {current}"
        )
    if md.signed.is_expired(now):
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
    return pending


def accept_signed_metadata(
    repo: Path,
    keys: KeyStore,
    *,
    signed_root: bytes | None = None,
    signed_targets: bytes | None = None,
    uploads: Mapping[str, Path] | None = None,
    now: datetime | None = None,
) -> tuple[Metadata[Root] | None, Metadata[Any] | None]:
    """Take a root and/or targets metadata signed offline, plus the files targets lists.

    The Overlord calls this from its publish API with only the online keys. A new root must
    pass :func:`check_new_root` and name the online keys the Overlord holds; targets must be
    signed by the (new, if any) root's targets keys, move the version forward, and every new
    target file must match its signed length and hashes. Nothing is written unless all of
    that holds; then target files, root, targets, snapshot and timestamp, in that order.
    """
    if signed_root is None and signed_targets is None:
        raise RepositoryError("nothing to publish: neither root nor targets metadata given")
    store = Repository(repo)
    moment = _now(now)
    new_root = check_new_root(store.root().signed, signed_root, moment) if signed_root else None
    root = new_root.signed if new_root else store.root().signed
    if new_root is not None:
        _check_online_keys(root, keys)
    targets = pending = None
    if signed_targets is not None:
        targets = _parse_signed(signed_targets, "targets")
        pending = _check_targets(store, root, targets, uploads or {}, moment)
    else:
        served = store.load("targets")
        try:
            root.verify_delegate("targets", served.signed_bytes, served.signatures)
        except UnsignedMetadataError as err:
            raise RepositoryError(
                "the new root changes the targets keys but no targets metadata signed with "
                "them was uploaded",
                hint="publish the re-signed targets.json together with the new root",
            ) from err
    for src, dest in pending or []:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with src.open("rb") as handle, atomic_open(dest) as out:
            shutil.copyfileobj(handle, out, _COPY_SIZE)
    if new_root is not None:
        data = new_root.to_bytes(_SERIALIZER)
        atomic_write(store.metadata_dir / f"{root.version}.root.json", data)
        atomic_write(store.metadata_dir / "root.json", data)
    if targets is not None:
        data = targets.to_bytes(_SERIALIZER)
        atomic_write(store.metadata_dir / f"{targets.signed.version}.targets.json", data)
        atomic_write(store.metadata_dir / "targets.json", data)
        store.publish_targets(targets, keys, now)
    else:
        refresh_timestamp(repo, keys, now=now)
    return new_root, targets


def accept_signed_targets(
    repo: Path,
    keys: KeyStore,
    signed_targets: bytes,
    uploads: Mapping[str, Path],
    *,
    now: datetime | None = None,
) -> Metadata[Any]:
    """Take targets metadata signed offline (in CI) plus the files it lists, verified."""
    _root, md = accept_signed_metadata(
        repo, keys, signed_targets=signed_targets, uploads=uploads, now=now
    )
    assert md is not None
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
