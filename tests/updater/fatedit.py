"""Edit a FAT12/16 image made by mkfs.vfat and mcopy the way a hostile or fragmented card
would look: a file's clusters moved (out of order, with gaps) or its chain rewired."""

from __future__ import annotations

import struct

from updater.fatroot import FatVolume, RootEntry, read_root_file

END = 0xFFFF  # end of chain (cut to 12 bits on FAT12)


def _volume(image: bytearray) -> FatVolume:
    return FatVolume(lambda offset, length: bytes(image[offset : offset + length]))


def entry(image: bytearray, name: str) -> RootEntry:
    found = _volume(image).find(name, limit=len(image))
    assert found is not None
    return found


def clusters(image: bytearray, name: str) -> list[int]:
    volume = _volume(image)
    return volume.file_clusters(entry(image, name))


def link(image: bytearray, cluster: int, value: int) -> None:
    """Set FAT entry ``cluster`` to ``value`` in every FAT copy."""
    volume = _volume(image)
    assert volume.bits in (12, 16)
    for copy in range(image[16]):
        base = volume.fat_start + copy * volume.fat_bytes
        if volume.bits == 16:
            struct.pack_into("<H", image, base + cluster * 2, value & 0xFFFF)
            continue
        pos = base + cluster * 3 // 2
        pair = struct.unpack_from("<H", image, pos)[0]
        odd = (pair & 0x000F) | ((value & 0xFFF) << 4)  # FAT12: odd entries in the high bits
        pair = odd if cluster & 1 else (pair & 0xF000) | (value & 0xFFF)
        struct.pack_into("<H", image, pos, pair)


def move(image: bytearray, name: str, new: list[int]) -> None:
    """Put ``name``'s bytes in clusters ``new``, in that order, and chain them so."""
    volume = _volume(image)
    data = read_root_file(lambda o, n: bytes(image[o : o + n]), name, limit=len(image))
    assert data is not None
    old = clusters(image, name)
    assert len(new) == len(old)
    for cluster in old:
        link(image, cluster, 0)
    size = volume.cluster_bytes
    for index, cluster in enumerate(new):
        piece = data[index * size : (index + 1) * size].ljust(size, b"\0")
        start = volume.cluster_offset(cluster)
        image[start : start + size] = piece
        link(image, cluster, new[index + 1] if index + 1 < len(new) else END)
    root = volume.root_start
    for pos in range(root, root + volume.root_bytes, 32):
        if image[pos : pos + 11] == _short(name):
            struct.pack_into("<H", image, pos + 20, new[0] >> 16)
            struct.pack_into("<H", image, pos + 26, new[0] & 0xFFFF)
            return
    raise AssertionError(f"{name} not in the root folder")


def reorder(image: bytearray, name: str, order: str) -> None:
    """``gapped``: the second half of ``name``'s clusters moved further on (fragmented, still
    ascending); ``swapped``: the two halves swapped (the chain goes back on the card);
    ``contiguous``: left as mcopy wrote it."""
    old = clusters(image, name)
    half = len(old) // 2
    if order == "gapped":
        move(image, name, old[:half] + [c + 40 for c in old[half:]])
    elif order == "swapped":
        move(image, name, old[half:] + old[:half])


DAMAGE = ("loop", "past the filesystem", "short", "long")


def rewire(image: bytearray, name: str, damage: str) -> None:
    """Break ``name``'s chain as a hostile card would (one of :data:`DAMAGE`)."""
    chain = clusters(image, name)
    if damage == "loop":  # the last cluster points back at the first
        link(image, chain[-1], chain[0])
    elif damage == "past the filesystem":  # a cluster number beyond the FAT12 image's last
        link(image, chain[3], 0xFF0)
    elif damage == "short":  # the chain ends before the file does
        link(image, chain[-3], END)
    else:  # long: the chain goes on past the file's size
        link(image, chain[-1], chain[-1] + 1)
        link(image, chain[-1] + 1, END)


def _short(name: str) -> bytes:
    stem, _, ext = name.upper().partition(".")
    return stem.ljust(8).encode() + ext.ljust(3).encode()
