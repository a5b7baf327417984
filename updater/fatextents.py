"""Where a file of a FAT root folder lies: its byte extents in the filesystem, in file order.

The updater hashes a secure-boot slot's ``boot.img`` while the read-back streams the boot
partition past (:mod:`updater.bootimage`), and reads the ``cmdline.txt`` inside it without
loading the whole image (:mod:`updater.verity`): both need to know which bytes of the
partition are the file's, and in what order. Found with the FAT reader's own bounds checks
(:meth:`~updater.fatroot.FatVolume.file_clusters`): a chain that loops, leaves the
filesystem, or is longer or shorter than the file is a :class:`~updater.fatroot.FatError`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from itertools import accumulate

from updater.fatroot import FatError, FatVolume, Reader


@dataclass(frozen=True)
class Extent:
    """``length`` bytes of the file, from byte ``start`` of the filesystem."""

    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class FileExtents:
    """A file's bytes as runs of adjacent clusters, in file order (the last run cut to the
    file's size)."""

    name: str
    size: int
    extents: tuple[Extent, ...]

    @property
    def end(self) -> int:
        """Where the file's last byte on the filesystem ends (0 for an empty file)."""
        return max((extent.end for extent in self.extents), default=0)

    @property
    def ascending(self) -> bool:
        """Whether each run starts after the one before it ends: then a read of the whole
        filesystem from front to back passes the file's bytes in file order."""
        return all(a.end <= b.start for a, b in zip(self.extents, self.extents[1:], strict=False))

    def reader(self, read: Reader) -> Reader:
        """Read the file's own bytes (offsets from its start) through the filesystem's
        ``read``; a read past its end is a :class:`FatError`."""
        starts = [0, *accumulate(extent.length for extent in self.extents)]

        def read_file(offset: int, length: int) -> bytes:
            if offset < 0 or offset + length > self.size:
                raise FatError(f"read at {offset}+{length} is past the end of {self.name}")
            parts = []
            index = bisect.bisect_right(starts, offset) - 1
            while length > 0:
                extent, inside = self.extents[index], offset - starts[index]
                piece = min(length, extent.length - inside)
                parts.append(read(extent.start + inside, piece))
                offset, length, index = offset + piece, length - piece, index + 1
            return b"".join(parts)

        return read_file


def locate(read: Reader, name: str, *, limit: int) -> FileExtents | None:
    """The extents of ``name`` (8.3, any case) in the root folder of the FAT behind ``read``,
    None if it is absent; the directory entry and the chain are small reads, not the file."""
    fat = FatVolume(read)
    entry = fat.find(name, limit=limit)
    if entry is None:
        return None
    extents: list[Extent] = []
    left = entry.size
    for cluster in fat.file_clusters(entry) if entry.size else []:
        start, length = fat.cluster_offset(cluster), min(fat.cluster_bytes, left)
        left -= length
        if extents and extents[-1].end == start:
            extents[-1] = Extent(extents[-1].start, extents[-1].length + length)
        else:
            extents.append(Extent(start, length))
    return FileExtents(name, entry.size, tuple(extents))
