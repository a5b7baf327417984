"""A minimal tar reader whose every allocation is capped before it happens.

``tarfile`` reads a PAX or GNU long-name header into memory whole, however large its header
block says it is: a 150 MiB PAX header in a 5 KB compressed bundle cost 453 MiB of RAM. This
reader parses the 512-byte headers itself and refuses an extended header larger than
``max_header_bytes`` before reading it; member data is never buffered, only streamed to the
caller or skipped. It understands what ``tarfile`` and ``docker save`` write (ustar, PAX local
headers with ``path``/``linkpath``/``size``, GNU ``L``/``K`` long names) and refuses the rest
(global PAX headers, sparse files, base-256 negative sizes, bad checksums).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from fleetcore.rolebundle.errors import ArchiveError

BLOCK = 512
# Real PAX records for one member are a few hundred bytes (a long path, mtime, uid names).
MAX_HEADER_BYTES = 64 * 1024

REGULAR = frozenset({b"0", b"\0", b"7"})
DIRECTORY = b"5"
SYMLINK = b"2"
HARDLINK = b"1"
_PAX_LOCAL = b"x"
_PAX_GLOBAL = b"g"
_GNU_LONGNAME = b"L"
_GNU_LONGLINK = b"K"
_EXTENDED = frozenset({_PAX_LOCAL, _GNU_LONGNAME, _GNU_LONGLINK})


@dataclass(frozen=True)
class Member:
    """One archive member as its headers describe it; ``offset`` is where its data starts."""

    name: str
    type: bytes
    size: int
    mode: int
    linkname: str
    offset: int

    def isreg(self) -> bool:
        return self.type in REGULAR

    def isdir(self) -> bool:
        return self.type == DIRECTORY

    def issym(self) -> bool:
        return self.type == SYMLINK

    def islnk(self) -> bool:
        return self.type == HARDLINK


def _number(field: bytes, what: str) -> int:
    if field[:1] == b"\x80":  # GNU base-256, positive: sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise ArchiveError(f"tar header has a negative {what}")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ArchiveError(f"tar header has a malformed {what} field") from None


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"tar {what} is not valid UTF-8") from None


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156], "checksum")
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 8 * 0x20
    return stored in (unsigned, signed)


def _pax_records(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise ArchiveError("tar PAX header is malformed")
        length = int(data[pos:space])
        record = data[space + 1 : pos + length]
        if length <= space - pos or pos + length > len(data) or not record.endswith(b"\n"):
            raise ArchiveError("tar PAX header is malformed")
        key, sep, value = record[:-1].partition(b"=")
        if not sep:
            raise ArchiveError("tar PAX header is malformed")
        name = _text(key, "PAX key")
        if name.startswith("GNU.sparse"):
            raise ArchiveError("tar archive holds a sparse file")
        records[name] = _text(value, "PAX value")
        pos += length
    return records


class TarReader:
    """Iterates the members of an uncompressed tar stream; read or skip each one's data."""

    def __init__(self, stream: IO[bytes], *, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self.stream = stream
        self.max_header_bytes = max_header_bytes
        self.position = 0
        self._unread = 0  # data bytes (with padding) of the current member not yet consumed

    def _read_exact(self, count: int) -> bytes:
        data = self.stream.read(count)
        if len(data) != count:
            raise ArchiveError("tar archive is truncated")
        self.position += count
        return data

    def _skip(self, count: int) -> None:
        seek = getattr(self.stream, "seekable", None)
        if seek is not None and seek():
            self.stream.seek(count, 1)
            self.position += count
            return
        while count:
            count -= len(self._read_exact(min(count, 1024 * 1024)))

    @staticmethod
    def _padded(size: int) -> int:
        return -(-size // BLOCK) * BLOCK

    def __iter__(self) -> Iterator[Member]:
        while True:
            if self._unread:
                self._skip(self._unread)
                self._unread = 0
            member = self._next()
            if member is None:
                return
            self._unread = self._padded(member.size)
            yield member

    def read_data(self, member: Member, chunk: int = 1024 * 1024) -> Iterator[bytes]:
        """The data of ``member``, the one just yielded, in chunks of at most ``chunk`` bytes."""
        left = member.size
        while left:
            data = self._read_exact(min(left, chunk))
            left -= len(data)
            self._unread -= len(data)
            yield data
        self._skip(self._unread)
        self._unread = 0

    def _next(self) -> Member | None:
        pax: dict[str, str] = {}
        long_name = long_link = None
        while True:
            block = self.stream.read(BLOCK)
            self.position += len(block)
            if block and len(block) != BLOCK:
                raise ArchiveError("tar archive is truncated")
            if not block or block == bytes(BLOCK):  # a plain end of stream is accepted too
                return None
            if not _checksum_ok(block):
                raise ArchiveError("tar header checksum is wrong")
            kind = block[156:157]
            size = _number(block[124:136], "size")
            if kind == _PAX_GLOBAL:
                raise ArchiveError("tar archive has a global PAX header")
            if kind in _EXTENDED:
                if size > self.max_header_bytes:
                    raise ArchiveError(
                        f"tar extended header of {size} bytes exceeds the "
                        f"{self.max_header_bytes}-byte cap"
                    )
                data = self._read_exact(self._padded(size))[:size]
                if kind == _PAX_LOCAL:
                    pax.update(_pax_records(data))
                elif kind == _GNU_LONGNAME:
                    long_name = _text(data.split(b"\0", 1)[0], "member name")
                else:
                    long_link = _text(data.split(b"\0", 1)[0], "link name")
                continue
            if kind == b"S":
                raise ArchiveError("tar archive holds a sparse file")
            name = _text(block[0:100].split(b"\0", 1)[0], "member name")
            if block[257:262] == b"ustar":
                prefix = _text(block[345:500].split(b"\0", 1)[0], "member name")
                if prefix:
                    name = f"{prefix}/{name}"
            name = pax.get("path", long_name if long_name is not None else name)
            link = _text(block[157:257].split(b"\0", 1)[0], "link name")
            link = pax.get("linkpath", long_link if long_link is not None else link)
            if "size" in pax:
                if not pax["size"].isdigit():
                    raise ArchiveError("tar PAX size is not a number")
                size = int(pax["size"])
            if kind not in REGULAR:
                size = 0 if kind in (DIRECTORY, SYMLINK, HARDLINK) else size
            mode = _number(block[100:108], "mode") & 0o7777
            return Member(name, kind, size, mode, link, self.position)
