"""A chunk index in compact form: digests in one bytes buffer, sizes and offsets in arrays.

A parsed :class:`fleetcore.release.ChunkIndex` costs hundreds of bytes per chunk in Python
objects; this costs about 48, so memory stays small for multi-GiB images.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass

from fleetcore.release import ChunkIndex, ImageName

DIGEST = 32


@dataclass(frozen=True)
class CompactIndex:
    image: ImageName
    image_size: int
    image_sha256: str
    digests: bytes
    sizes: array[int]
    offsets: array[int]

    @classmethod
    def from_index(cls, index: ChunkIndex) -> CompactIndex:
        digests = bytearray()
        sizes, offsets = array("Q"), array("Q")
        pos = 0
        for chunk in index.chunks:
            digests += bytes.fromhex(chunk.sha256)
            sizes.append(chunk.size)
            offsets.append(pos)
            pos += chunk.size
        return cls(
            index.image, index.image_size, index.image_sha256, bytes(digests), sizes, offsets
        )

    def __len__(self) -> int:
        return len(self.sizes)

    def digest(self, i: int) -> bytes:
        return self.digests[i * DIGEST : (i + 1) * DIGEST]


class SeedMap:
    """Where each chunk of a slot's images sits: a sorted digest table searched by bisection."""

    def __init__(self, indexes: list[CompactIndex]) -> None:
        rows = sorted(
            (idx.digest(i), n, idx.offsets[i], idx.sizes[i])
            for n, idx in enumerate(indexes)
            for i in range(len(idx))
        )
        self.images = [idx.image for idx in indexes]
        self._keys = [row[0] for row in rows]
        self._rows = [(row[1], row[2], row[3]) for row in rows]

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, digest: bytes) -> tuple[ImageName, int, int] | None:
        """The image, offset and size of a chunk with this digest, if the seed has one."""
        at = bisect.bisect_left(self._keys, digest)
        if at < len(self._keys) and self._keys[at] == digest:
            image, offset, size = self._rows[at]
            return self.images[image], offset, size
        return None
