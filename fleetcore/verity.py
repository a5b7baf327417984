"""The dm-verity contract between the image builder, the boot partition and the device.

A system image built with ``--verity`` is the filesystem followed by its hash tree (format 1,
SHA-256, 4 KiB blocks, no superblock), so the one partition carries both (ADR 0071). The
geometry, salt and root hash travel in the slot's ``cmdline.txt`` as one kernel argument::

    fleet.verity=1:sha256:4096:<data blocks>:<hash offset bytes>:<salt hex>:<root hash hex>

This module renders and parses that argument and checks a tree in pure Python (the same tree
``veritysetup format`` writes), in one front-to-back read: the updater checks a new slot's
tree while it reads the slot back against the signed hash.
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


def _hashes(base: hashlib._Hash, data: bytes | memoryview) -> bytes:
    """One salted digest per whole block of ``data``."""
    view = memoryview(data)
    out = bytearray()
    for pos in range(0, len(view) - BLOCK + 1, BLOCK):
        digest = base.copy()
        digest.update(view[pos : pos + BLOCK])
        out += digest.digest()
    return bytes(out)


def _padded(hashes: bytes) -> bytes:
    return hashes + bytes(-len(hashes) % BLOCK)


class TreeCheck:
    """Checks a verity image read once, front to back, in pieces of any size: the updater
    feeds it the system slot while it reads the slot back against the signed hash, so a
    secure release costs no second read (ADR 0071).

    The leaves' digests computed from the data and the stored bottom level are compared by a
    running SHA-256 of each, and the level above the bottom is computed while the bottom
    streams past: memory is the tree above its bottom level (1/128 of the tree) and one
    block, whatever the image's size.
    """

    def __init__(self, params: VerityParams) -> None:
        self.params = params
        self._base = hashlib.sha256(bytes.fromhex(params.salt))
        self._sizes = level_blocks(params.data_blocks)
        # The top level is stored first: level i starts after every level above it.
        self._starts, pos = {}, params.hash_offset
        for level in reversed(range(len(self._sizes))):
            self._starts[level] = pos
            pos += self._sizes[level] * BLOCK
        self._data_end = params.data_blocks * BLOCK
        self._bottom = self._starts.get(0, params.hash_offset)
        self._end = params.image_size
        self._upper = bytearray()  # stored levels above the bottom, top first
        self._leaves = hashlib.sha256()  # the leaves' digests, computed from the data
        self._first_leaf = b""  # the root itself when the data is one block (no tree)
        self._stored = hashlib.sha256()  # the bottom level as stored
        self._above = bytearray()  # the level above the bottom, computed from the stored one
        self._pos = 0
        self._carry = b""

    def update(self, data: bytes | memoryview) -> None:
        """The next ``len(data)`` bytes of the image (bytes past its end are ignored)."""
        if self._carry:
            data = self._carry + bytes(data)
        start, view = self._pos - len(self._carry), memoryview(data)
        whole = len(view) - len(view) % BLOCK
        self._take(start, view[:whole])
        self._carry = bytes(view[whole:])
        self._pos = start + len(view)

    def _take(self, start: int, view: memoryview) -> None:
        # Whole blocks from ``start`` (a block boundary; every region starts on one).
        end = start + len(view)
        if start < self._data_end:
            leaves = _hashes(self._base, view[: self._data_end - start])
            if not self._first_leaf:
                self._first_leaf = leaves[: len(leaves) and _DIGEST]
            self._leaves.update(leaves)
        lo, hi = max(start, self.params.hash_offset), min(end, self._bottom)
        if lo < hi:
            self._upper += view[lo - start : hi - start]
        lo, hi = max(start, self._bottom), min(end, self._end)
        if lo < hi:
            self._stored.update(view[lo - start : hi - start])
            self._above += _hashes(self._base, view[lo - start : hi - start])

    def finish(self) -> None:
        """Raise :class:`VerityMismatch` unless the image read so far verifies: every
        stored tree block matches the level below it and the top hashes to the root."""
        if self._pos < self._end:
            raise VerityMismatch(f"verity image ends at {self._pos} bytes, before {self._end}")
        if not self._sizes:
            self._root(self._first_leaf)
            return
        self._leaves.update(bytes(-(self.params.data_blocks * _DIGEST) % BLOCK))
        if self._leaves.digest() != self._stored.digest():
            raise VerityMismatch("verity hash tree level 0 does not match the data below it")
        upper = bytes(self._upper)
        below = bytes(self._above)
        for level in range(1, len(self._sizes)):
            first = self._starts[level] - self.params.hash_offset
            stored = upper[first : first + self._sizes[level] * BLOCK]
            if stored != _padded(below):
                raise VerityMismatch(
                    f"verity hash tree level {level} does not match the data below it"
                )
            below = _hashes(self._base, stored)
        self._root(below[:_DIGEST])

    def _root(self, digest: bytes) -> None:
        if digest.hex() != self.params.root_hash:
            raise VerityMismatch(
                f"verity root hash {digest.hex()[:16]}... is not the signed "
                f"{self.params.root_hash[:16]}..."
            )


def check_tree(read: Callable[[int, int], bytes], params: VerityParams) -> None:
    """Recompute the tree from the data read with ``read(offset, length)``; raise
    :class:`VerityMismatch` unless every stored tree block and the root hash match."""
    check = TreeCheck(params)
    for pos in range(0, params.image_size, _PIECE):
        check.update(read(pos, min(_PIECE, params.image_size - pos)))
    check.finish()
