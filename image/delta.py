"""Make chunk deltas (``fleetcore.delta``) from a previous release to a new one, at build time.

For each chunk of the new image that the previous release lacks, the base is the stretch of
the previous image where that chunk's bytes most likely were: the nearest earlier chunk both
images share anchors the position (an inserted package shifts everything after it, so the
same offset would point at other files), and the previous image's chunks overlapping the
anchored range, with ``neighbours`` more on each side, form the raw-content dictionary. The
diff is kept when it is smaller than the chunk's own compressed file (ADR 0073).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import zstandard

from fleetcore.delta import (
    MAX_BASE_BYTES,
    MAX_BASES,
    Delta,
    DeltaList,
    delta_list_file,
    delta_path,
    dump_deltas,
)
from fleetcore.release import Chunk, ChunkIndex, ImageName, chunk_path
from fleetcore.version import Version
from image import chunkstore

# Measured by bench/bench_delta.py (ADR 0073): two old chunks each side of the anchored range.
DEFAULT_NEIGHBOURS = 2


@dataclass
class _Previous:
    """One image of the previous release: its chunks in order and where each starts."""

    chunks: tuple[Chunk, ...]
    offsets: list[int]
    first_at: dict[str, int]

    @classmethod
    def of(cls, index: ChunkIndex) -> _Previous:
        offsets = index.offsets()
        first_at: dict[str, int] = {}
        for chunk, offset in zip(index.chunks, offsets, strict=True):
            first_at.setdefault(chunk.sha256, offset)
        return cls(index.chunks, offsets, first_at)

    def around(self, start: int, size: int, neighbours: int) -> tuple[Chunk, ...]:
        """Chunks overlapping ``[start, start + size)`` and ``neighbours`` more each side,
        trimmed from the outside to the protocol's bounds."""
        lo = max(bisect.bisect_right(self.offsets, start) - 1 - neighbours, 0)
        hi = min(bisect.bisect_left(self.offsets, start + size) + neighbours, len(self.chunks))
        picked = list(self.chunks[lo:hi])
        while picked and (len(picked) > MAX_BASES or sum(c.size for c in picked) > MAX_BASE_BYTES):
            # drop the end farther from the anchored range's middle
            middle = start + size // 2
            first_mid = self.offsets[lo] + picked[0].size // 2
            last_mid = self.offsets[lo + len(picked) - 1] + picked[-1].size // 2
            if middle - first_mid > last_mid - middle:
                picked.pop(0)
                lo += 1
            else:
                picked.pop()
        return tuple(picked)


def make(
    out: Path,
    previous: Path,
    *,
    version: Version,
    from_version: Version,
    new: Mapping[ImageName, ChunkIndex],
    old: Mapping[ImageName, ChunkIndex],
    level: int = chunkstore.DEFAULT_LEVEL,
    neighbours: int = DEFAULT_NEIGHBOURS,
) -> DeltaList:
    """Diff the chunks of ``new`` (stored in ``out``) against release ``previous`` (its
    indexes ``old``, its chunks in ``previous/chunks``); write the diffs and the list."""
    have = {chunk.sha256 for index in old.values() for chunk in index.chunks}
    deltas: dict[str, Delta] = {}
    for name, index in sorted(new.items()):
        if name not in old:
            continue
        before = _Previous.of(old[name])
        shift = 0  # new offset minus old offset at the last shared chunk
        for chunk, offset in zip(index.chunks, index.offsets(), strict=True):
            if chunk.sha256 in before.first_at:
                shift = offset - before.first_at[chunk.sha256]
                continue
            if chunk.sha256 in have or chunk.sha256 in deltas:
                continue
            bases = before.around(max(offset - shift, 0), chunk.size, neighbours)
            delta = _diff(out, previous, chunk, bases, level)
            if delta is not None:
                deltas[chunk.sha256] = delta
    result = DeltaList(from_version=from_version, to_version=version, deltas=tuple(deltas.values()))
    path = out / delta_list_file(from_version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dump_deltas(result))
    return result


def _diff(
    out: Path, previous: Path, chunk: Chunk, bases: tuple[Chunk, ...], level: int
) -> Delta | None:
    if not bases:
        return None
    base = b"".join(chunkstore.read_chunk(previous, b.sha256, b.size) for b in bases)
    data = chunkstore.read_chunk(out, chunk.sha256, chunk.size)
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    compressor = zstandard.ZstdCompressor(
        level=level, dict_data=dictionary, write_checksum=False, write_dict_id=False
    )
    diff = compressor.compress(data)
    if len(diff) >= (out / chunk_path(chunk.sha256)).stat().st_size:
        return None
    chunkstore.store_file(out / delta_path(chunk.sha256, bases), diff)
    return Delta(target=chunk.sha256, bases=bases, delta_size=len(diff))
