"""Build OS releases and a signed TUF repository for the updater tests.

Images are deterministic pseudo-random bytes cut with FastCDC, the chunker the image
builder uses, so seeded updates behave as they do with real images.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import zstandard
from pyfastcdc import FastCDC

from fleetcore.atomic import atomic_write
from fleetcore.release import (
    BytePatch,
    Chunk,
    Chunker,
    ChunkIndex,
    Hardware,
    ImageEntry,
    ImageName,
    Manifest,
    SlotVariant,
    SystemFormat,
    chunk_path,
    dump_index,
    dump_manifest,
    index_target,
)
from fleetcore.version import Version
from image import delta
from image.release import read_previous
from signing.keys import KeyStore
from signing.repository import init_repository, publish_release

CHUNKER = Chunker(min_size=4096, avg_size=16384, max_size=65536)


def image_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def patched(data: bytes, at: int, patch: bytes) -> bytes:
    """``data`` with ``patch`` written over it at ``at``: a one-package change."""
    return data[:at] + patch + data[at + len(patch) :]


def cut(data: bytes, image: ImageName, out: Path, chunker: Chunker = CHUNKER) -> ChunkIndex:
    cdc = FastCDC(min_size=chunker.min_size, avg_size=chunker.avg_size, max_size=chunker.max_size)
    chunks = []
    compressor = zstandard.ZstdCompressor(level=3)
    for piece in cdc.cut_buf(data):
        plain = bytes(data[piece.offset : piece.offset + piece.length])
        digest = hashlib.sha256(plain).hexdigest()
        path = out / chunk_path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(compressor.compress(plain))
        chunks.append(Chunk(sha256=digest, size=len(plain)))
    return ChunkIndex(
        image=image,
        image_size=len(data),
        image_sha256=hashlib.sha256(data).hexdigest(),
        chunker=chunker,
        chunks=tuple(chunks),
    )


def build_release(
    out: Path,
    version: str,
    images: dict[ImageName, bytes],
    *,
    hardware: tuple[Hardware, ...] = (Hardware.QEMU,),
    claimed_sha256: str | None = None,
    slot_b_boot_patch: tuple[int, bytes] | None = None,
    delta_from: Path | None = None,
) -> Path:
    """Write an ``fleet-image assemble``-style release directory.

    ``claimed_sha256`` replaces the system image's hash in the index and the manifest, for a
    release whose signed hash does not match its bytes. ``delta_from`` (a release directory
    built here before) adds chunk deltas from that release, made by the image builder's code.
    """
    release = out / f"release-{version}"
    release.mkdir(parents=True)
    entries = {}
    indexes = {}
    for image, data in images.items():
        index = indexes[image] = cut(data, image, release)
        if claimed_sha256 is not None and image is ImageName.SYSTEM:
            index = index.model_copy(update={"image_sha256": claimed_sha256})
        atomic_write(release / f"{image.value}.index.json", dump_index(index))
        entries[image] = ImageEntry(
            size=index.image_size, sha256=index.image_sha256, index=index_target(version, image)
        )
    slot_b = {}
    if slot_b_boot_patch is not None:
        at, data = slot_b_boot_patch
        written = patched(images[ImageName.BOOT], at, data)
        slot_b[ImageName.BOOT] = SlotVariant(
            sha256=hashlib.sha256(written).hexdigest(),
            patches=(BytePatch(offset=at, data=data.hex()),),
        )
    manifest = Manifest(
        version=Version(version),
        hardware=hardware,
        system_format=SystemFormat.EROFS,
        created=0,
        images=entries,
        slot_b=slot_b,
    )
    if delta_from is not None:
        from_version, old = read_previous(delta_from)
        delta.make(
            release,
            delta_from,
            version=Version(version),
            from_version=from_version,
            new=indexes,
            old=old,
        )
    atomic_write(release / "manifest.json", dump_manifest(manifest))
    return release


class ReleaseRepo:
    """A signed TUF repository with OS releases, as the Overlord serves it under /tuf."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.path = base / "repo"
        self.keys = KeyStore.generate(base / "keys")
        init_repository(self.path, self.keys)
        self.releases: dict[str, dict[ImageName, bytes]] = {}

    def copy(self, base: Path) -> ReleaseRepo:
        """An independent copy with the same keys, for tests that publish more releases."""
        shutil.copytree(self.base, base)
        clone = ReleaseRepo.__new__(ReleaseRepo)
        clone.base, clone.path = base, base / "repo"
        clone.keys = KeyStore.open(base / "keys")
        clone.releases = dict(self.releases)
        return clone

    @property
    def root_json(self) -> bytes:
        return (self.path / "metadata" / "1.root.json").read_bytes()

    def publish(self, version: str, images: dict[ImageName, bytes], **kw: object) -> Path:
        release = build_release(self.base / "build", version, images, **kw)  # type: ignore[arg-type]
        publish_release(self.path, self.keys, release)
        self.releases[version] = images
        return release

    def chunk_file(self, data: bytes) -> Path:
        return self.path / chunk_path(hashlib.sha256(data).hexdigest())
