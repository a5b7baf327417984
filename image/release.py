"""Write a release folder: chunk store, one chunk index per image, and the manifest.

Layout of ``OUT/release`` (what ``fleet-sign add-release`` publishes)::

    manifest.json  boot.index.json  system.index.json  chunks/
    delta-lists/<from>.json  deltas/      (only with ``delta_from``: ``image.delta``)

Slot B's boot image is not indexed: it is slot A's with a few bytes replaced, and those
patches travel in the manifest (``Manifest.slot_b``, ADR 0013).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from fleetcore.errors import FormatError
from fleetcore.release import (
    BytePatch,
    Chunker,
    ChunkIndex,
    Hardware,
    ImageEntry,
    ImageName,
    Manifest,
    SlotVariant,
    SystemFormat,
    dump_index,
    dump_manifest,
    index_target,
    load_manifest,
)
from fleetcore.version import Version
from image import chunkstore, delta
from image.errors import LayoutError

MANIFEST = "manifest.json"
# Runs of differing bytes closer than this are merged into one patch.
_PATCH_GAP = 16
_BLOCK = 2**20


def index_file(image: ImageName) -> str:
    return f"{image.value}.index.json"


def write(
    out: Path,
    *,
    version: Version,
    hardware: Sequence[Hardware],
    system_format: SystemFormat,
    created: int,
    images: Mapping[ImageName, Path],
    slot_b: Mapping[ImageName, Path],
    chunker: Chunker = chunkstore.DEFAULT_CHUNKER,
    level: int = chunkstore.DEFAULT_LEVEL,
    delta_from: Sequence[Path] = (),
) -> Manifest:
    """Chunk every image into ``out/chunks`` and write the indexes and manifest; with
    ``delta_from`` (previous release folders), the chunk deltas from each of them too."""
    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    indexes = {}
    for name, path in sorted(images.items()):
        index = chunkstore.cut(path, name, out, chunker=chunker, level=level)
        indexes[name] = index
        (out / index_file(name)).write_bytes(dump_index(index))
        entries[name] = ImageEntry(
            size=index.image_size, sha256=index.image_sha256, index=index_target(version, name)
        )
    variants = {
        name: SlotVariant(
            sha256=chunkstore.sha256_file(path), patches=tuple(diff(images[name], path))
        )
        for name, path in sorted(slot_b.items())
    }
    manifest = Manifest(
        version=version,
        hardware=tuple(hardware),
        system_format=system_format,
        created=created,
        images=entries,
        slot_b=variants,
    )
    for previous in delta_from:
        from_version, old = read_previous(previous)
        delta.make(
            out,
            previous,
            version=version,
            from_version=from_version,
            new=indexes,
            old=old,
            level=level,
        )
    (out / MANIFEST).write_bytes(dump_manifest(manifest))
    return manifest


def read_manifest(release: Path) -> Manifest:
    return load_manifest((release / MANIFEST).read_bytes())


def read_previous(release: Path) -> tuple[Version, dict[ImageName, ChunkIndex]]:
    """The version and chunk indexes of a previous release folder, to make deltas from."""
    try:
        manifest = read_manifest(release)
        return manifest.version, {
            name: chunkstore.load_index_file(release / index_file(name)) for name in ImageName
        }
    except OSError as err:
        raise LayoutError(
            f"--delta-from {release} is not a release folder: {err.filename}: {err.strerror}"
        ) from err
    except FormatError as err:
        raise LayoutError(f"--delta-from {release}: {err}") from err


def diff(base: Path, other: Path) -> Iterator[BytePatch]:
    """Patches that turn ``base`` into ``other`` (same size): runs of differing bytes."""
    if base.stat().st_size != other.stat().st_size:
        raise LayoutError(f"{other.name} and {base.name} differ in size")
    start = end = -1
    with base.open("rb") as a, other.open("rb") as b:
        offset = 0
        while block_a := a.read(_BLOCK):
            block_b = b.read(_BLOCK)
            if block_a != block_b:
                for i, (x, y) in enumerate(zip(block_a, block_b, strict=True)):
                    if x == y:
                        continue
                    pos = offset + i
                    if start >= 0 and pos - end > _PATCH_GAP:
                        yield _patch(other, start, end)
                        start = -1
                    if start < 0:
                        start = pos
                    end = pos + 1
            offset += len(block_a)
    if start >= 0:
        yield _patch(other, start, end)


def _patch(other: Path, start: int, end: int) -> BytePatch:
    with other.open("rb") as handle:
        handle.seek(start)
        return BytePatch(offset=start, data=handle.read(end - start).hex())
