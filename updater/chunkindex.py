"""A chunk index in compact form: digests in one bytes buffer, sizes and offsets in arrays.

A parsed :class:`fleetcore.release.ChunkIndex` costs hundreds of bytes per chunk in Python
objects (and more while JSON and pydantic build it); this costs about 48, so memory stays
small for multi-GiB images. :func:`load_compact` reads the canonical JSON that
``fleetcore.release.dump_index`` writes without building per-chunk objects, and falls back to
the full model for any other spelling, so both paths apply the same validation.
"""

from __future__ import annotations

import bisect
import re
from array import array
from dataclasses import dataclass

from fleetcore import strictjson
from fleetcore.errors import FormatError
from fleetcore.release import MAX_CHUNK_SIZE, Chunk, ChunkIndex, ImageName, load_index

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

    def max_size(self) -> int:
        return max(self.sizes, default=0)

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


_CHUNKS_KEY = b'"chunks":['
_CHUNK = re.compile(rb'\{"sha256":"([0-9a-f]{64})","size":([1-9][0-9]{0,11})\}(,|$)')


def load_compact(data: bytes) -> CompactIndex:
    """Parse and validate a chunk index straight into compact form."""
    start = data.find(_CHUNKS_KEY)
    end = data.find(b"]", start) if start >= 0 else -1
    if start < 0 or end < 0:
        return CompactIndex.from_index(load_index(data))
    region = data[start + len(_CHUNKS_KEY) : end]
    digests, sizes, offsets = bytearray(), array("Q"), array("Q")
    pos = expected = 0
    for match in _CHUNK.finditer(region):
        if match.start() != expected:
            return CompactIndex.from_index(load_index(data))  # not canonical: full parse
        expected = match.end()
        size = int(match.group(2))
        if size > MAX_CHUNK_SIZE:
            return CompactIndex.from_index(load_index(data))  # the full model says why
        digests += bytes.fromhex(match.group(1).decode())
        sizes.append(size)
        offsets.append(pos)
        pos += size
    if expected != len(region):
        return CompactIndex.from_index(load_index(data))
    try:
        # Strict: a second "chunks" key (or any duplicate) would make the publisher's full
        # parse and this one read different chunk lists.
        header = strictjson.loads(data[: start + len(_CHUNKS_KEY)] + data[end:], what="index")
        # fleetcore's model validates every header field; stand-in chunks of at most
        # MAX_CHUNK_SIZE adding up to the real chunks' total satisfy its "sizes add up" rule
        # (no more of them than real chunks). A total that differs fails below.
        if isinstance(header, dict) and header.get("image_size") == pos:
            whole, rest = divmod(pos, MAX_CHUNK_SIZE)
            stand_ins = [MAX_CHUNK_SIZE] * whole + ([rest] if rest else [])
            header["chunks"] = [Chunk(sha256="0" * 64, size=s).model_dump() for s in stand_ins]
        elif isinstance(header, dict) and isinstance(header.get("image_size"), int):
            raise FormatError(
                f"invalid chunk index: chunk sizes add up to {pos}, "
                f"image_size is {header['image_size']}"
            )
        model = ChunkIndex.model_validate(header)
    except (ValueError, FormatError) as err:  # pydantic's ValidationError is a ValueError
        raise FormatError(f"invalid chunk index: {err}") from err
    if pos != model.image_size:
        raise FormatError(
            f"invalid chunk index: chunk sizes add up to {pos}, image_size is {model.image_size}"
        )
    return CompactIndex(
        model.image, model.image_size, model.image_sha256, bytes(digests), sizes, offsets
    )
