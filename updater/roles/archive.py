"""Role bundles as ``tar.zst`` TUF targets: deterministic packing and safe unpacking.

Unpacking trusts nothing about the archive even though TUF verified it: members must be
regular files, directories or relative symlinks that stay inside the bundle; no absolute
names, no ``..``, no hard links, no device nodes or fifos; the total size and member count are
capped, and the decompressed stream itself is capped so a zstd bomb stops early.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from pathlib import Path
from typing import IO

import zstandard

from fleetcore.atomic import atomic_open
from updater.roles.bundle import load_bundle
from updater.roles.errors import ArchiveError, BundleError
from updater.roles.spec import UNRESOLVED_DIGEST

MAX_BUNDLE_BYTES = 64 * 1024 * 1024
MAX_MEMBERS = 2000
_ZSTD_LEVEL = 19


class _CappedReader(io.RawIOBase):
    """Reads at most ``cap`` bytes from ``inner``, then fails instead of returning EOF."""

    def __init__(self, inner: IO[bytes], cap: int) -> None:
        self.inner = inner
        self.left = cap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        self.left -= len(data)
        if self.left < 0:
            raise ArchiveError("bundle archive is larger than the size cap once decompressed")
        buffer[: len(data)] = data
        return len(data)


def pack(bundle_dir: Path, out: Path) -> None:
    """Validate ``bundle_dir`` and write it as a reproducible ``tar.zst`` to ``out``."""
    bundle = load_bundle(bundle_dir)
    unresolved = [image for image in bundle.spec.images if image.endswith(UNRESOLVED_DIGEST)]
    if unresolved:
        raise BundleError(
            f"image {unresolved[0]} has a placeholder digest; refusing to publish it",
            hint="resolve it with `docker buildx imagetools inspect <name:tag>`",
        )
    paths = sorted(p for p in bundle_dir.rglob("*") if p.is_symlink() or p.is_file() or p.is_dir())
    with atomic_open(out) as raw:
        compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
        with (
            compressor.stream_writer(raw, closefd=False) as zout,
            tarfile.open(fileobj=zout, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in paths:
                info = tar.gettarinfo(str(path), arcname=path.relative_to(bundle_dir).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isreg():
                    info.mode = 0o755 if info.mode & 0o111 else 0o644
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    info.mode = 0o755 if info.isdir() else 0o777
                    tar.addfile(info)


def _check_member(member: tarfile.TarInfo) -> str:
    name = member.name
    if not name or "\0" in name or name.startswith("/"):
        raise ArchiveError(f"archive member {name!r} has an absolute or empty name")
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../") or ".." in name.split("/"):
        raise ArchiveError(f"archive member {name!r} escapes the bundle")
    if member.islnk():
        raise ArchiveError(f"archive member {name!r} is a hard link")
    if member.issym():
        target = member.linkname
        if target.startswith("/"):
            raise ArchiveError(f"archive link {name!r} -> {target!r} is absolute")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(normal), target))
        if resolved == ".." or resolved.startswith("../"):
            raise ArchiveError(f"archive link {name!r} -> {target!r} escapes the bundle")
    elif not (member.isreg() or member.isdir()):
        raise ArchiveError(f"archive member {name!r} is a device node, fifo or other special")
    return normal


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    """Extract one checked member; Python's "data" filter too where it exists (3.11.4+)."""
    if hasattr(tarfile, "data_filter"):
        tar.extract(member, dest, filter="data")
        return
    # Older 3.11 (the Pi OS bookworm interpreter may lack PEP 706): _check_member already
    # refused everything the filter would, so only drop set-id bits and group/other write.
    member.mode &= 0o755
    tar.extract(member, dest, set_attrs=not member.issym())


def extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int = MAX_BUNDLE_BYTES,
    max_members: int = MAX_MEMBERS,
) -> None:
    """Unpack ``archive`` into the empty directory ``dest``; raise on the first unsafe member."""
    total = 0
    members = 0
    try:
        with archive.open("rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            capped = io.BufferedReader(_CappedReader(reader, max_bytes + 1024 * 1024))
            with tarfile.open(fileobj=capped, mode="r|") as tar:
                for member in tar:
                    members += 1
                    if members > max_members:
                        raise ArchiveError(f"bundle archive has more than {max_members} members")
                    _check_member(member)
                    total += member.size
                    if total > max_bytes:
                        raise ArchiveError(f"bundle archive is larger than {max_bytes} bytes")
                    _extract(tar, member, dest)
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as err:
        raise ArchiveError(f"{archive.name} is not a valid tar.zst bundle: {err}") from err
    except OSError as err:
        raise ArchiveError(f"cannot unpack {archive.name}: {err}") from err
