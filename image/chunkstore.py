"""Cut images into content-defined chunks (FastCDC 2020) and keep them in a zstd chunk store.

The store is a folder laid out as ``fleetcore.release.chunk_path`` says, so it can be shared by
every release and served as static files. A chunk already present is not written again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import zstandard
from pyfastcdc import FastCDC

from fleetcore.release import (
    Chunk,
    Chunker,
    ChunkIndex,
    ImageName,
    chunk_path,
    load_index,
    max_compressed_size,
)
from fleetcore.zstdcap import ZstdBombError, decompress_exact
from image.errors import ImageError

# Chosen by bench/bench_delta.py (ADR 0010): small enough that a one-package change touches
# few bytes, large enough that the index stays small and zstd has context.
DEFAULT_CHUNKER = Chunker(min_size=16 * 1024, avg_size=64 * 1024, max_size=256 * 1024)
DEFAULT_LEVEL = 12


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def cut(
    image: Path,
    name: ImageName,
    store: Path,
    *,
    chunker: Chunker = DEFAULT_CHUNKER,
    level: int = DEFAULT_LEVEL,
) -> ChunkIndex:
    """Chunk ``image`` into ``store`` and return its index."""
    cdc = FastCDC(chunker.avg_size, min_size=chunker.min_size, max_size=chunker.max_size, seed=0)
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=False, threads=0)
    chunks = []
    size = image.stat().st_size
    if size:
        for piece in cdc.cut_file(str(image)):
            data = bytes(piece.data)
            sha = hashlib.sha256(data).hexdigest()
            chunks.append(Chunk(sha256=sha, size=len(data)))
            store_file(store / chunk_path(sha), compressor.compress(data))
    return ChunkIndex(
        image=name,
        image_size=size,
        image_sha256=sha256_file(image),
        chunker=chunker,
        chunks=tuple(chunks),
    )


def store_file(path: Path, compressed: bytes) -> None:
    """Write a content-addressed file (a chunk or a delta) unless it is already there."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(compressed)
    tmp.replace(path)


def read_chunk(store: Path, sha: str, size: int) -> bytes:
    """One chunk, decompressed and checked against its hash."""
    limit = max_compressed_size(size)
    try:
        with (store / chunk_path(sha)).open("rb") as handle:
            compressed = handle.read(limit + 1)  # a stray huge file is not read whole
        if len(compressed) > limit:
            raise ImageError(f"chunk {sha} is larger than a chunk of {size} bytes can be")
        data = decompress_exact(compressed, size, what=f"chunk {sha}")
    except (OSError, ZstdBombError) as err:
        raise ImageError(f"chunk {sha} unreadable: {err}") from err
    if hashlib.sha256(data).hexdigest() != sha:
        raise ImageError(f"chunk {sha} does not match its hash")
    return data


def reassemble(index: ChunkIndex, store: Path, out: Path) -> None:
    """Write the image an index describes, verifying every chunk and the whole."""
    digest = hashlib.sha256()
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("wb") as handle:
        for chunk in index.chunks:
            data = read_chunk(store, chunk.sha256, chunk.size)
            digest.update(data)
            handle.write(data)
    if digest.hexdigest() != index.image_sha256:
        tmp.unlink()
        raise ImageError(f"{index.image} image reassembled from chunks does not match its hash")
    tmp.replace(out)


def load_index_file(path: Path) -> ChunkIndex:
    return load_index(path.read_bytes())
