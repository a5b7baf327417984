"""A writer for the ``newc`` cpio format the kernel unpacks as an initramfs.

Entries are built in memory, so a test initramfs needs neither root (device nodes) nor the
cpio tool.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass, field

TRAILER = "TRAILER!!!"


@dataclass
class Archive:
    entries: list[tuple[str, int, bytes, int]] = field(default_factory=list)
    """(name, mode, data, rdev) in archive order."""

    def directory(self, name: str) -> None:
        self.entries.append((name, stat.S_IFDIR | 0o755, b"", 0))

    def file(self, name: str, data: bytes, *, mode: int = 0o644) -> None:
        self.entries.append((name, stat.S_IFREG | mode, data, 0))

    def symlink(self, name: str, target: str) -> None:
        self.entries.append((name, stat.S_IFLNK | 0o777, target.encode(), 0))

    def char_device(self, name: str, major: int, minor: int, *, mode: int = 0o600) -> None:
        self.entries.append((name, stat.S_IFCHR | mode, b"", (major << 8) | minor))

    def to_bytes(self) -> bytes:
        out = bytearray()
        for ino, (name, mode, data, rdev) in enumerate(self.entries, start=1):
            out += _entry(ino, name, mode, data, rdev)
        out += _entry(0, TRAILER, 0, b"", 0)
        return bytes(out)

    def gzipped(self) -> bytes:
        # mtime=0 keeps the initramfs byte-identical between builds.
        return gzip.compress(self.to_bytes(), compresslevel=6, mtime=0)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _entry(ino: int, name: str, mode: int, data: bytes, rdev: int) -> bytes:
    encoded = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF, len(encoded), 0)
    header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
    head = header + encoded
    return head + _pad(len(head)) + data + _pad(len(data))
