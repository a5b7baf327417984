"""Read one small file from the root folder of a FAT filesystem (12, 16 or 32), unmounted.

The updater reads the new slot's ``cmdline.txt`` from its boot partition this way: the
partition may be a byte range of a disk image (tests, the simulator), which no ``mount``
takes, and a reader of bytes keeps the check pure. Only 8.3 names of the root folder, and
only files up to ``limit`` bytes: enough for ``cmdline.txt``, bounded on a hostile image.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from fleetcore.errors import FormatError

Reader = Callable[[int, int], bytes]
_ENTRY = 32
_ATTR_SKIP = 0x08 | 0x10  # volume label, folder (long-name entries have 0x0F: label bit set)
_FAT_BLOCK = 64 * 1024  # the FAT is read in blocks: a long file's chain is not one read a link


class FatError(FormatError):
    """The bytes are a damaged FAT filesystem, or one this reader does not understand."""


class NotFat(FatError):
    """The bytes hold no FAT filesystem at all (no boot sector signature)."""


@dataclass(frozen=True)
class RootEntry:
    """A file of the root folder: its first cluster and its size in bytes."""

    name: str
    first_cluster: int
    size: int


class FatVolume:
    """A FAT filesystem behind a reader: its geometry, root folder and cluster chains."""

    def __init__(self, read: Reader) -> None:
        self.read = read
        self._fat_blocks: dict[int, bytes] = {}
        boot = read(0, 512)
        if boot[510:512] != b"\x55\xaa":
            raise NotFat("no FAT boot sector (signature 55 aa missing)")
        (self.sector, self.per_cluster, reserved, fats, root_entries, total16, fat16) = (
            struct.unpack_from("<HBHBHHxH", boot, 11)
        )
        total32, fat32, self.root_cluster = struct.unpack_from("<II4xI", boot, 32)
        if self.sector not in (512, 1024, 2048, 4096) or self.per_cluster == 0:
            raise FatError(f"implausible FAT geometry (sector {self.sector} bytes)")
        fat_sectors = fat16 or fat32
        total = total16 or total32
        self.fat_start = reserved * self.sector
        self.fat_bytes = fat_sectors * self.sector
        self.root_start = (reserved + fats * fat_sectors) * self.sector
        root_sectors = -(-root_entries * _ENTRY // self.sector)
        self.root_bytes = root_entries * _ENTRY
        self.data_sector = reserved + fats * fat_sectors + root_sectors
        self.clusters = (total - self.data_sector) // self.per_cluster
        self.bits = 12 if self.clusters < 4085 else 16 if self.clusters < 65525 else 32
        self.fat32 = self.bits == 32

    @property
    def cluster_bytes(self) -> int:
        return int(self.per_cluster * self.sector)

    def cluster_offset(self, cluster: int) -> int:
        """Where ``cluster`` (2 or more) starts, in bytes from the start of the filesystem."""
        return int((self.data_sector + (cluster - 2) * self.per_cluster) * self.sector)

    def chain(self, first: int, limit: int) -> list[int]:
        """The clusters of a file from ``first``, at most enough for ``limit`` bytes."""
        out: list[int] = []
        cluster = first
        end = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}[self.bits]
        while 2 <= cluster < end:
            if cluster >= self.clusters + 2 or len(out) * self.cluster_bytes >= limit:
                raise FatError(f"FAT cluster chain leaves the filesystem or exceeds {limit} bytes")
            out.append(cluster)
            cluster = self._next(cluster)
        return out

    def file_clusters(self, entry: RootEntry) -> list[int]:
        """The clusters of ``entry``: exactly as many as its size needs, or a :class:`FatError`
        (a chain that loops, leaves the filesystem, or is longer or shorter than the file)."""
        clusters = self.chain(entry.first_cluster, entry.size)
        if len(clusters) * self.cluster_bytes < entry.size:
            raise FatError(
                f"{entry.name}'s FAT cluster chain holds {len(clusters) * self.cluster_bytes} "
                f"bytes, short of its {entry.size}"
            )
        return clusters

    def _fat(self, pos: int, length: int) -> bytes:
        """``length`` bytes at ``pos`` of the first FAT."""
        if pos + length > self.fat_bytes:
            raise FatError("FAT cluster chain leaves the FAT")
        block, inside = divmod(pos, _FAT_BLOCK)
        if inside + length > _FAT_BLOCK:  # a FAT12 entry across two blocks
            head = _FAT_BLOCK - inside
            return self._fat(pos, head) + self._fat(pos + head, length - head)
        data = self._fat_blocks.get(block)
        if data is None:
            start = block * _FAT_BLOCK
            data = self.read(self.fat_start + start, min(_FAT_BLOCK, self.fat_bytes - start))
            self._fat_blocks[block] = data
        return data[inside : inside + length]

    def _next(self, cluster: int) -> int:
        if self.bits == 32:
            return int(struct.unpack("<I", self._fat(cluster * 4, 4))[0]) & 0x0FFFFFFF
        if self.bits == 16:
            return int(struct.unpack("<H", self._fat(cluster * 2, 2))[0])
        # FAT12: 1.5 bytes an entry, the odd ones in the high 12 bits of their two bytes.
        pair = int(struct.unpack("<H", self._fat(cluster * 3 // 2, 2))[0])
        return pair >> 4 if cluster & 1 else pair & 0xFFF

    def clusters_bytes(self, clusters: list[int]) -> bytes:
        return b"".join(self.read(self.cluster_offset(n), self.cluster_bytes) for n in clusters)

    def root(self, limit: int) -> bytes:
        if self.fat32:
            return self.clusters_bytes(self.chain(self.root_cluster, limit))
        return self.read(self.root_start, self.root_bytes)

    def find(self, name: str, *, limit: int) -> RootEntry | None:
        """The root folder's entry for ``name`` (an 8.3 name, any case), None if absent; a
        :class:`FatError` if the file is larger than ``limit`` bytes."""
        wanted = _short_name(name)
        root = self.root(max(limit, 1 << 20))
        for pos in range(0, len(root) - _ENTRY + 1, _ENTRY):
            entry = root[pos : pos + _ENTRY]
            if entry[0] == 0:
                break
            if entry[0] == 0xE5 or entry[11] & _ATTR_SKIP or entry[:11] != wanted:
                continue
            high, low, size = struct.unpack_from("<H4xHI", entry, 20)
            if size > limit:
                raise FatError(f"{name} is {size} bytes, above the {limit} read here")
            return RootEntry(name, high << 16 | low, size)
        return None


def _short_name(name: str) -> bytes:
    stem, _, ext = name.upper().partition(".")
    if not (0 < len(stem) <= 8 and len(ext) <= 3):
        raise ValueError(f"{name!r} is not an 8.3 name")
    return stem.ljust(8).encode() + ext.ljust(3).encode()


def read_root_file(read: Reader, name: str, *, limit: int = 64 * 1024) -> bytes | None:
    """The bytes of ``name`` (an 8.3 name, any case) in the root folder; None if absent."""
    fat = FatVolume(read)
    entry = fat.find(name, limit=limit)
    if entry is None:
        return None
    if entry.size == 0:
        return b""
    return fat.clusters_bytes(fat.file_clusters(entry))[: entry.size]
