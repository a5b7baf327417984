"""One image tree from the data of many packages, laid out for merged /usr.

Debian bookworm packages still ship files below ``/bin``, ``/sbin`` and ``/lib`` while a
bookworm system has those as symlinks into ``/usr`` (usrmerge). dpkg unpacking on such a
system follows the symlinks, so a package's ``lib/x`` lands in ``usr/lib/x``; :func:`merged`
does the same move here and :meth:`Tree.entries` adds the alias symlinks. Symlink targets are
left as the package wrote them, exactly as dpkg leaves them.

Hard links inside a package become regular copies (they would otherwise tie the layer's member
order to the packages' order). Two packages may ship the same directory, or the same file with
the same content; anything else is a conflict dpkg would refuse too.
"""

from __future__ import annotations

import fnmatch
import io
import tarfile
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import PurePosixPath

from image.roleimage.errors import TreeError

# top-level directories that merged /usr turns into symlinks to usr/<name>
ALIASED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
ALWAYS_ALIASED = ("bin", "sbin", "lib")
# what base-files would have made and programs expect (Docker itself adds /proc, /sys, /dev)
SKELETON = {"tmp": 0o1777}


class Kind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


@dataclass(frozen=True)
class Entry:
    path: str
    kind: Kind
    mode: int
    uid: int
    gid: int
    package: str
    data: bytes = b""
    target: str = ""

    def same_content(self, other: Entry) -> bool:
        return (self.kind, self.mode, self.uid, self.gid, self.data, self.target) == (
            other.kind,
            other.mode,
            other.uid,
            other.gid,
            other.data,
            other.target,
        )


def normalize(name: str) -> str:
    """A tar member name as a relative path without ``./`` or a trailing slash."""
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "/")]
    if ".." in parts:
        raise TreeError(f"member {name!r} leaves the image root")
    return "/".join(parts)


def merged(path: str) -> str | None:
    """Where ``path`` lands under merged /usr; None for an aliased directory itself."""
    top, _, rest = path.partition("/")
    if top in ALIASED:
        return f"usr/{top}/{rest}" if rest else None
    return path


class Tree:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._aliases: set[str] = set(ALWAYS_ALIASED)

    def add_package(self, package: str, data_tar: bytes) -> None:
        """Add every member of a package's file-system tar."""
        with tarfile.open(fileobj=io.BytesIO(data_tar), mode="r:") as tar:
            members = tar.getmembers()
            added: dict[str, Entry] = {}
            for member in members:
                entry = self._entry(package, tar, member, added)
                if entry is not None:
                    added[entry.path] = entry
                    self._put(entry)

    def _entry(
        self,
        package: str,
        tar: tarfile.TarFile,
        member: tarfile.TarInfo,
        added: dict[str, Entry],
    ) -> Entry | None:
        name = normalize(member.name)
        if not name:
            return None
        path = merged(name)
        if path is None:
            self._aliases.add(name)
            return None
        if name.partition("/")[0] in ALIASED:
            self._aliases.add(name.partition("/")[0])
        mode, uid, gid = member.mode & 0o7777, member.uid, member.gid
        if member.isdir():
            return Entry(path, Kind.DIR, mode, uid, gid, package)
        if member.issym():
            return Entry(path, Kind.SYMLINK, mode, uid, gid, package, target=member.linkname)
        if member.islnk():
            source = merged(normalize(member.linkname))
            if source is None or source not in added or added[source].kind is not Kind.FILE:
                raise TreeError(f"{package}: hard link {name} to a missing file {member.linkname}")
            return replace(added[source], path=path, mode=mode, uid=uid, gid=gid)
        if member.isreg():
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
            return Entry(path, Kind.FILE, mode, uid, gid, package, data=data)
        raise TreeError(f"{package}: {name} is a device node or fifo, which packages never ship")

    def _put(self, entry: Entry) -> None:
        old = self._entries.get(entry.path)
        if old is None:
            self._entries[entry.path] = entry
        elif old.kind is Kind.DIR and entry.kind is Kind.DIR:
            return
        elif not old.same_content(entry):
            raise TreeError(
                f"{entry.path} is shipped differently by {old.package} and {entry.package}"
            )

    def prune(self, prefixes: tuple[str, ...], keep: tuple[str, ...] = ()) -> None:
        """Drop everything at or below ``prefixes`` except paths matching ``keep``."""

        def pruned(path: str) -> bool:
            covered = any(path == p or path.startswith(p + "/") for p in prefixes)
            return covered and not any(fnmatch.fnmatchcase(path, k) for k in keep)

        kept = {path for path in self._entries if not pruned(path)}
        for path in list(kept):
            parent = PurePosixPath(path).parent
            while str(parent) != ".":
                kept.add(str(parent))
                parent = parent.parent
        self._entries = {p: e for p, e in self._entries.items() if p in kept}

    def files(self) -> dict[str, Entry]:
        return dict(self._entries)

    def entries(self) -> list[Entry]:
        """Every entry sorted by path, with the merged-/usr alias symlinks and their targets,
        and the skeleton directories no package ships (``/tmp``)."""
        result = dict(self._entries)
        for path, mode in SKELETON.items():
            result.setdefault(path, Entry(path, Kind.DIR, mode, 0, 0, "skeleton"))
        for alias in sorted(self._aliases):
            target = f"usr/{alias}"
            result.setdefault("usr", Entry("usr", Kind.DIR, 0o755, 0, 0, "merged-usr"))
            result.setdefault(target, Entry(target, Kind.DIR, 0o755, 0, 0, "merged-usr"))
            result[alias] = Entry(alias, Kind.SYMLINK, 0o777, 0, 0, "merged-usr", target=target)
        for path, entry in result.items():
            parent = str(PurePosixPath(path).parent)
            if parent != "." and (parent not in result or result[parent].kind is not Kind.DIR):
                raise TreeError(f"{path} ({entry.package}) has no parent directory {parent}")
        return [result[path] for path in sorted(result)]
