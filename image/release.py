"""Write a release folder: chunk store, one chunk index per image, and the manifest.

Layout of ``OUT/release`` (what ``fleet-sign add-release`` publishes)::

    manifest.json  boot.index.json  boot_b.index.json  system.index.json  chunks/
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fleetcore.release import (
    Chunker,
    Hardware,
    ImageEntry,
    ImageName,
    Manifest,
    SystemFormat,
    dump_index,
    dump_manifest,
    index_target,
    load_manifest,
)
from fleetcore.version import Version
from image import chunkstore

MANIFEST = "manifest.json"


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
    chunker: Chunker = chunkstore.DEFAULT_CHUNKER,
    level: int = chunkstore.DEFAULT_LEVEL,
) -> Manifest:
    """Chunk every image into ``out/chunks`` and write the indexes and manifest."""
    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, path in sorted(images.items()):
        index = chunkstore.cut(path, name, out, chunker=chunker, level=level)
        (out / index_file(name)).write_bytes(dump_index(index))
        entries[name] = ImageEntry(
            size=index.image_size, sha256=index.image_sha256, index=index_target(version, name)
        )
    manifest = Manifest(
        version=version,
        hardware=tuple(hardware),
        system_format=system_format,
        created=created,
        images=entries,
    )
    (out / MANIFEST).write_bytes(dump_manifest(manifest))
    return manifest


def read_manifest(release: Path) -> Manifest:
    return load_manifest((release / MANIFEST).read_bytes())
