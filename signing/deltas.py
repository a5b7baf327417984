"""Publish a release's chunk deltas (``fleetcore.delta``): each list a TUF target, the diffs
copied into the store after each was decoded against its bases and checked against its
target chunk's hash, so a broken diff is caught on the build host, not on the devices."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from fleetcore.atomic import atomic_write
from fleetcore.delta import DELTA_LISTS, Delta, DeltaList, delta_path, deltas_target, load_deltas
from fleetcore.errors import FormatError
from fleetcore.release import Manifest, chunk_path
from fleetcore.zstdcap import ZstdBombError, decompress_exact
from signing.errors import RepositoryError
from signing.targets import TargetSpec


def delta_specs(
    release_dir: Path, repo: Path, manifest: Manifest, sizes: dict[str, int]
) -> list[TargetSpec]:
    """Check and copy the diffs of every delta list in ``release_dir``; the lists' targets.

    ``sizes`` maps each chunk of the release to its size. Base chunks must already be in
    ``repo`` (they are the previous release's, published before)."""
    specs = []
    for path in sorted((release_dir / DELTA_LISTS).glob("*.json")):
        try:
            deltas = load_deltas(path.read_bytes())
        except FormatError as err:
            raise RepositoryError(f"{path}: {err}") from err
        if deltas.to_version != manifest.version or path.stem != str(deltas.from_version):
            raise RepositoryError(
                f"{path} lists deltas from {deltas.from_version} to {deltas.to_version}, "
                f"not from {path.stem} to {manifest.version}"
            )
        _copy_deltas(release_dir, repo, deltas, sizes)
        specs.append(TargetSpec(path, deltas_target(manifest.version, deltas.from_version)))
    return specs


def _copy_deltas(release_dir: Path, repo: Path, deltas: DeltaList, sizes: dict[str, int]) -> None:
    for delta in deltas.deltas:
        name = delta_path(delta.target, delta.bases)
        try:
            diff = (release_dir / name).read_bytes()
        except OSError as err:
            raise RepositoryError(f"delta {name}: {err.filename} is missing") from err
        store_delta(repo, delta, diff, sizes)


def store_delta(repo: Path, delta: Delta, diff: bytes, sizes: Mapping[str, int]) -> bool:
    """Check one diff and add it to ``repo``: it decodes against its base chunks (from
    ``repo``'s chunk store) to exactly its target chunk's size and hash. ``sizes`` maps the
    release's chunks to their sizes. Returns False when the store already had it. The
    Overlord's publish API uses this too."""
    name = delta_path(delta.target, delta.bases)
    what = f"delta {name}"
    if delta.target not in sizes:
        raise RepositoryError(f"{what} makes a chunk the release does not list")
    dest = repo / name
    if dest.exists():
        return False
    if len(diff) != delta.delta_size:
        raise RepositoryError(f"{what} is {len(diff)} bytes, {delta.delta_size} listed")
    try:
        base = b"".join(
            decompress_exact(
                (repo / chunk_path(b.sha256)).read_bytes(), b.size, what=f"chunk {b.sha256}"
            )
            for b in delta.bases
        )
        plain = decompress_exact(diff, sizes[delta.target], what=what, base=base)
    except OSError as err:
        raise RepositoryError(f"{what}: base {err.filename} is missing") from err
    except ZstdBombError as err:
        raise RepositoryError(str(err)) from err
    if hashlib.sha256(plain).hexdigest() != delta.target:
        raise RepositoryError(f"{what} does not make its chunk's bytes")
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, diff)
    return True
