"""Publishing offline-signed releases and keeping snapshot and timestamp fresh."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetcore.delta import delta_path, is_deltas_target, load_deltas
from fleetcore.errors import FormatError
from fleetcore.release import ChunkIndex, chunk_path, load_index
from overlord.errors import PublishRejected, RepositoryMissing
from overlord.tuf.models import timestamp_path
from overlord.tuf.schemas import PublishResult
from signing.deltas import store_delta
from signing.errors import SigningError
from signing.keys import KeyStore
from signing.repository import (
    Repository,
    accept_signed_metadata,
    refresh_timestamp,
    store_chunk,
)

log = logging.getLogger(__name__)


def _online_keys(keys_dir: Path) -> KeyStore:
    try:
        return KeyStore.open(keys_dir)
    except SigningError as err:
        raise RepositoryMissing(str(err), hint=err.hint) from err


def publish(
    *,
    repo_dir: Path,
    keys_dir: Path,
    signed_root: bytes | None,
    signed_targets: bytes | None,
    uploads: Mapping[str, Path],
    chunks: Mapping[str, Path],
    diffs: Mapping[str, Path] | None = None,
) -> PublishResult:
    """Verify and publish: a new root, chunks by hash, indexes complete, each diff a delta
    list names decoding to its chunk, targets and hashes.

    A new root (a key rotation) must be the next version, signed by the thresholds of the
    current root and of itself, and name the online keys this Overlord holds.

    Chunks are content-addressed, so storing verified ones before the metadata check cannot
    expose anything: no signed index points at them until the targets metadata is accepted.
    Diffs are named by their chunk and bases and checked against the chunk's hash: the same.
    """
    if not (repo_dir / "metadata" / "root.json").exists():
        raise RepositoryMissing(f"no TUF repository at {repo_dir}", hint="run fleet-sign init")
    keys = _online_keys(keys_dir)
    new_chunks = 0
    try:
        indexes = {
            name: load_index(path.read_bytes())
            for name, path in uploads.items()
            if name.endswith(".index.json")
        }
        sizes = {c.sha256: c.size for index in indexes.values() for c in index.chunks}
        for digest, path in chunks.items():
            new_chunks += store_chunk(repo_dir, digest, path.read_bytes(), size=sizes.get(digest))
        for name, index in indexes.items():
            _check_index_chunks(repo_dir, name, index)
        new_deltas = _store_deltas(repo_dir, uploads, diffs or {}, sizes)
        root, targets = accept_signed_metadata(
            repo_dir, keys, signed_root=signed_root, signed_targets=signed_targets, uploads=uploads
        )
    except (SigningError, FormatError) as err:
        raise PublishRejected(f"publish rejected: {err}", hint=err.hint) from err
    if root is not None:
        log.warning("published root version %d (a key rotation)", root.signed.version)
    served = targets or Repository(repo_dir).load("targets")
    return PublishResult(
        root_version=Repository(repo_dir).root().signed.version,
        targets_version=served.signed.version,
        targets=sorted(served.signed.targets),
        new_chunks=new_chunks,
        new_deltas=new_deltas,
    )


@dataclass(frozen=True)
class Served:
    """What the repository serves: the before of a publish's audit entry."""

    root_version: int
    targets_version: int
    targets: frozenset[str]


def served(repo_dir: Path) -> Served | None:
    repo = Repository(repo_dir)
    if not repo.exists():
        return None
    try:
        targets = repo.load("targets").signed
        return Served(repo.root().signed.version, targets.version, frozenset(targets.targets))
    except SigningError:
        return None


def _check_index_chunks(repo_dir: Path, name: str, index: ChunkIndex) -> None:
    missing = [c.sha256 for c in index.chunks if not (repo_dir / chunk_path(c.sha256)).exists()]
    if missing:
        raise PublishRejected(
            f"index {name} names {len(missing)} chunks that are neither uploaded nor stored, "
            f"first {missing[0]}"
        )


def _store_deltas(
    repo_dir: Path, uploads: Mapping[str, Path], diffs: Mapping[str, Path], sizes: dict[str, int]
) -> int:
    """Check and store the diffs the uploaded delta lists name; every named diff must be
    uploaded or stored already, and nothing else may be uploaded."""
    named: set[str] = set()
    missing: list[str] = []
    stored = 0
    for name, path in uploads.items():
        if not is_deltas_target(name):
            continue
        for delta in load_deltas(path.read_bytes()).deltas:
            diff = delta_path(delta.target, delta.bases)
            named.add(diff)
            if diff in diffs:
                stored += store_delta(repo_dir, delta, diffs[diff].read_bytes(), sizes)
            elif not (repo_dir / diff).exists():
                missing.append(diff)
    if missing:
        raise PublishRejected(
            f"delta lists name {len(missing)} diffs that are neither uploaded nor stored, "
            f"first {missing[0]}"
        )
    stray = sorted(set(diffs) - named)
    if stray:
        raise PublishRejected(f"{len(stray)} uploaded diffs are named by no delta list: {stray[0]}")
    return stored


def timestamp_age_s(repo_dir: Path) -> float | None:
    try:
        return time.time() - timestamp_path(repo_dir).stat().st_mtime
    except FileNotFoundError:
        return None


def refresh_if_due(*, repo_dir: Path, keys_dir: Path, interval_s: float) -> bool:
    """Re-sign snapshot and timestamp when the served timestamp is older than ``interval_s``."""
    age = timestamp_age_s(repo_dir)
    if age is None or age < interval_s:
        return False
    refresh_timestamp(repo_dir, _online_keys(keys_dir))
    log.info("re-signed snapshot and timestamp of %s", repo_dir)
    return True
