"""The dm-verity contract between the image builder, the boot partition and the device.

A system image built with ``--verity`` is the filesystem followed by its hash tree (format 1,
SHA-256, 4 KiB blocks, no superblock), so the one partition carries both (ADR 0071). The
geometry, salt and root hash travel in the slot's ``cmdline.txt`` as one kernel argument::

    fleet.verity=1:sha256:4096:<data blocks>:<hash offset bytes>:<salt hex>:<root hash hex>

This module renders and parses that argument and checks a tree in pure Python (the same tree
``veritysetup format`` writes): the updater's fallback when ``veritysetup`` is not installed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from fleetcore.errors import FleetError, FormatError

ARG = "fleet.verity"
# The device-mapper name the initramfs gives the verified root (/dev/mapper/fleet-root).
MAPPER_NAME = "fleet-root"
HASH = "sha256"
BLOCK = 4096
_DIGEST = hashlib.sha256().digest_size
_PER_BLOCK = BLOCK // _DIGEST  # 128 hashes per block: a power of two, so no padding per entry
_HEX64 = re.compile(r"[0-9a-f]{64}")


class VerityMismatch(FleetError):
    """A system image's data or hash tree does not hash to the root hash it must match."""


@dataclass(frozen=True)
class VerityParams:
    """Where a system image's hash tree is and what it must hash to."""

    data_blocks: int
    hash_offset: int  # bytes from the partition's start; the tree follows the filesystem
    salt: str
    root_hash: str

    def __post_init__(self) -> None:
        if self.data_blocks < 1 or self.hash_offset < self.data_blocks * BLOCK:
            raise FormatError(
                f"verity geometry {self.data_blocks} blocks, hash offset {self.hash_offset}: "
                "the hash tree must start after the data"
            )
        if self.hash_offset % BLOCK:
            raise FormatError(f"verity hash offset {self.hash_offset} is not a multiple of {BLOCK}")
        for name, value in [("salt", self.salt), ("root hash", self.root_hash)]:
            if not _HEX64.fullmatch(value):
                raise FormatError(f"verity {name} is not 64 lowercase hex digits: {value[:80]!r}")

    @property
    def hash_blocks(self) -> int:
        return sum(level_blocks(self.data_blocks))

    @property
    def image_size(self) -> int:
        """Bytes of data plus tree: what the system slot must hold."""
        return self.hash_offset + self.hash_blocks * BLOCK

    def kernel_arg(self) -> str:
        fields = [
            "1", HASH, str(BLOCK), str(self.data_blocks), str(self.hash_offset),
            self.salt, self.root_hash,
        ]  # fmt: skip
        return f"{ARG}={':'.join(fields)}"

    @classmethod
    def parse_arg(cls, value: str) -> VerityParams:
        """The value of ``fleet.verity=`` (without the name)."""
        fields = value.split(":")
        if len(fields) != 7 or fields[:3] != ["1", HASH, str(BLOCK)]:
            raise FormatError(
                f"{ARG}={value[:80]!r} is not 1:{HASH}:{BLOCK}:BLOCKS:OFFSET:SALT:ROOT"
            )
        if not (fields[3].isdecimal() and fields[4].isdecimal()):
            raise FormatError(f"{ARG}: data blocks and hash offset must be numbers")
        return cls(int(fields[3]), int(fields[4]), fields[5], fields[6])


def from_cmdline(text: str) -> VerityParams | None:
    """The verity root named on a kernel command line (``/proc/cmdline``), None without one;
    the last ``fleet.verity=`` counts, as for the kernel's own arguments."""
    values = [arg.split("=", 1)[1] for arg in text.split() if arg.startswith(f"{ARG}=")]
    return VerityParams.parse_arg(values[-1]) if values else None


def level_blocks(data_blocks: int) -> list[int]:
    """Blocks of each tree level, leaves' hashes first (as dm-verity numbers them)."""
    levels, count = [], data_blocks
    while count > 1:
        count = -(-count // _PER_BLOCK)
        levels.append(count)
    return levels


_PIECE = 256 * BLOCK


def _hash_level(salt: bytes, read: Callable[[int, int], bytes], start: int, count: int) -> bytes:
    """The level above ``count`` blocks stored from ``start``: one salted digest per block,
    zero-padded to whole blocks."""
    base = hashlib.sha256(salt)
    out = bytearray()
    for first in range(0, count, _PIECE // BLOCK):
        n = min(_PIECE // BLOCK, count - first)
        piece = memoryview(read(start + first * BLOCK, n * BLOCK))
        for pos in range(0, n * BLOCK, BLOCK):
            digest = base.copy()
            digest.update(piece[pos : pos + BLOCK])
            out += digest.digest()
    out += bytes(-len(out) % BLOCK)
    return bytes(out)


def check_tree(read: Callable[[int, int], bytes], params: VerityParams) -> None:
    """Recompute the tree from the data read with ``read(offset, length)``; raise
    :class:`VerityMismatch` unless every stored tree block and the root hash match."""
    salt = bytes.fromhex(params.salt)
    sizes = level_blocks(params.data_blocks)
    # The top level is stored first: level i starts after every level above it.
    starts, pos = {}, params.hash_offset
    for level in reversed(range(len(sizes))):
        starts[level] = pos
        pos += sizes[level] * BLOCK
    below_start, count = 0, params.data_blocks
    for level, size in enumerate(sizes):
        if read(starts[level], size * BLOCK) != _hash_level(salt, read, below_start, count):
            raise VerityMismatch(f"verity hash tree level {level} does not match the data below it")
        below_start, count = starts[level], size
    root = hashlib.sha256(salt + read(below_start, BLOCK)).hexdigest()
    if root != params.root_hash:
        raise VerityMismatch(
            f"verity root hash {root[:16]}... is not the signed {params.root_hash[:16]}..."
        )
