"""Role bundles as ``tar.zst`` TUF targets: deterministic packing and safe unpacking.

Unpacking trusts nothing about the archive even though TUF verified it: members must be
regular files, directories or relative symlinks to a member of the bundle; no absolute
names, no ``..``, no hard links, no device nodes or fifos; the member count is capped, the
size is capped (the image archives under ``images/`` and everything else separately), and the
decompressed stream itself is capped so a zstd bomb stops early. Headers are parsed by
``tarstream`` (capped before anything is allocated) and files are created through directory
fds with ``O_NOFOLLOW``, never through a path a link could redirect, so the result does not
depend on the interpreter's ``tarfile`` filters (bookworm's 3.11.2 has none).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import zstandard

from fleetcore.atomic import atomic_open
from fleetcore.rolebundle.bundle import load_bundle
from fleetcore.rolebundle.errors import ArchiveError, BundleError
from fleetcore.rolebundle.images import IMAGES_DIR, archive_name, check_archive, local_ids
from fleetcore.rolebundle.spec import UNRESOLVED_DIGEST, RoleSpec
from fleetcore.rolebundle.tarstream import DIRECTORY, MAX_HEADER_BYTES, SYMLINK, Member, TarReader
from updater.roles.errors import NoSpace

# Everything but the image archives: compose file, config/, templates.
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
# The image archives together: a few realistic images (100-300 MB uncompressed each).
MAX_IMAGE_BYTES = 2 * 1024 * 1024 * 1024
MAX_MEMBERS = 2000
# zstd's levels: 19 for what devices download; lower ones pack hundreds of MB in seconds
# (a 100 MB image archive: level 19 25 s, 28 MB; level 10 2.3 s, 28 MB).
ZSTD_LEVEL = 19
ZSTD_LEVELS = range(1, 23)
# zstd's multi-threaded mode writes the same bytes whatever the number of workers (checked
# with 1 to 8), so packing stays reproducible across build hosts while image archives of
# hundreds of MB compress on every core.
_ZSTD_THREADS = -1


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


def pack(
    bundle_dir: Path, out: Path, *, images_dir: Path | None = None, level: int = ZSTD_LEVEL
) -> list[str]:
    """Validate ``bundle_dir`` and write it as a reproducible ``tar.zst`` to ``out``.

    With ``images_dir``, the archive ``images_dir/<hex>.tar`` of every ``sha256:<hex>`` image
    the bundle pins by ID goes into the packed ``images/`` (checked like one inside the bundle;
    one already in ``bundle_dir/images`` is kept). Returns the archives added that way.
    ``level`` is zstd's compression level.
    """
    if level not in ZSTD_LEVELS:
        raise BundleError(f"zstd level {level} is outside 1-22")
    bundle = load_bundle(bundle_dir)
    unresolved = [image for image in bundle.spec.images if image.endswith(UNRESOLVED_DIGEST)]
    if unresolved:
        raise BundleError(
            f"image {unresolved[0]} has a placeholder digest; refusing to publish it",
            hint="resolve it with `docker buildx imagetools inspect <name:tag>`",
        )
    entries = {
        path.relative_to(bundle_dir).as_posix(): path
        for path in bundle_dir.rglob("*")
        if path.is_symlink() or path.is_file() or path.is_dir()
    }
    added: dict[str, Path] = {}
    if images_dir is not None:
        added = _image_archives(bundle.spec, images_dir, entries)
        if added:
            entries.setdefault(IMAGES_DIR, images_dir.resolve())  # packed as a 0755 directory
            entries.update(added)
    with atomic_open(out) as raw:
        compressor = zstandard.ZstdCompressor(level=level, threads=_ZSTD_THREADS)
        with (
            compressor.stream_writer(raw, closefd=False) as zout,
            tarfile.open(fileobj=zout, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for arcname in sorted(entries, key=lambda name: name.split("/")):
                _add(tar, entries[arcname], arcname)
    return sorted(added)


def _image_archives(spec: RoleSpec, images_dir: Path, entries: dict[str, Path]) -> dict[str, Path]:
    """``images/<hex>.tar`` -> the checked archive in ``images_dir``, for IDs lacking one."""
    if not images_dir.is_dir():
        raise BundleError(f"{images_dir} is not a directory")
    added: dict[str, Path] = {}
    for image_hex in sorted(local_ids(spec)):
        arcname = f"{IMAGES_DIR}/{archive_name(image_hex)}"
        source = images_dir / archive_name(image_hex)
        if arcname in entries or not source.exists():
            continue
        source = source.resolve()
        if not source.is_file():
            raise BundleError(f"{source} is not a regular file")
        check_archive(source, image_hex, label=str(source))
        added[arcname] = source
    return added


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    """One member with the owner, times and modes normalised, so packing is reproducible."""
    info = tar.gettarinfo(str(path), arcname=arcname)
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


def _parts(name: str) -> tuple[str, ...]:
    """The components of a member name, refusing absolute, empty and ``..`` names."""
    if not name or "\0" in name or name.startswith("/"):
        raise ArchiveError(f"archive member {name!r} has an absolute or empty name")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if not parts:
        raise ArchiveError(f"archive member {name!r} has an absolute or empty name")
    if ".." in parts:
        raise ArchiveError(f"archive member {name!r} escapes the bundle")
    return parts


def _check_member(member: Member) -> tuple[str, ...]:
    parts = _parts(member.name)
    if member.islnk():
        raise ArchiveError(f"archive member {member.name!r} is a hard link")
    if member.issym():
        if not member.linkname or member.linkname.startswith("/") or "\0" in member.linkname:
            raise ArchiveError(
                f"archive link {member.name!r} -> {member.linkname!r} is absolute or empty"
            )
    elif not (member.isreg() or member.isdir()):
        raise ArchiveError(
            f"archive member {member.name!r} is a device node, fifo or other special"
        )
    return parts


def _link_target(
    parts: tuple[str, ...], target: str, kinds: dict[tuple[str, ...], bytes]
) -> tuple[str, ...]:
    """Where the link at ``parts`` points, walked over the archive's own members.

    No component of the walk may itself be a link, so the lexical walk is exactly what the
    kernel will resolve: a chain of links cannot take a ``..`` somewhere this check did not.
    The target must be a regular file or directory of the bundle.
    """
    where = list(parts[:-1])
    for step in target.split("/"):
        if step in ("", "."):
            continue
        if step == "..":
            if not where:
                raise ArchiveError(
                    f"archive link {'/'.join(parts)!r} -> {target!r} escapes the bundle"
                )
            where.pop()
            continue
        where.append(step)
        if kinds.get(tuple(where)) == SYMLINK:
            raise ArchiveError(
                f"archive link {'/'.join(parts)!r} -> {target!r} goes through another link"
            )
    kind = kinds.get(tuple(where))
    if not where or kind is None:
        raise ArchiveError(
            f"archive link {'/'.join(parts)!r} -> {target!r} names nothing in the bundle"
        )
    return tuple(where)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _Tree:
    """Creates members under one directory fd, opening every component with ``O_NOFOLLOW``.

    Nothing is resolved through a path string: a link in the way (one the archive made, or
    one that was there) makes the open fail instead of being followed.
    """

    def __init__(self, dest: Path) -> None:
        self.root = os.open(dest, _DIR_FLAGS)

    def close(self) -> None:
        os.close(self.root)

    def parent(self, parts: tuple[str, ...]) -> int:
        """An fd of the directory holding ``parts`` (created as needed); the caller closes it."""
        fd = os.dup(self.root)
        for part in parts[:-1]:
            fd = self._descend(fd, part, "/".join(parts))  # closes fd, even when it raises
        return fd

    @staticmethod
    def _descend(fd: int, part: str, name: str) -> int:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as err:
            raise ArchiveError(
                f"archive member {name!r} passes through {part!r}, which is not a directory"
            ) from err
        finally:
            os.close(fd)
        return child

    def directory(self, parts: tuple[str, ...]) -> None:
        os.close(self._descend(self.parent(parts), parts[-1], "/".join(parts)))

    def file(self, parts: tuple[str, ...], mode: int, data: Iterator[bytes]) -> None:
        parent = self.parent(parts)
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, mode, dir_fd=parent)
        except FileExistsError:
            raise ArchiveError(f"archive member {'/'.join(parts)!r} appears twice") from None
        finally:
            os.close(parent)
        with os.fdopen(fd, "wb") as out:
            for chunk in data:
                out.write(chunk)
            os.fchmod(out.fileno(), mode)

    def symlink(self, parts: tuple[str, ...], target: str) -> None:
        parent = self.parent(parts)
        try:
            os.symlink(target, parts[-1], dir_fd=parent)
        except FileExistsError:
            raise ArchiveError(f"archive member {'/'.join(parts)!r} appears twice") from None
        finally:
            os.close(parent)


def extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int = MAX_BUNDLE_BYTES,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    max_members: int = MAX_MEMBERS,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> None:
    """Unpack ``archive`` into the empty directory ``dest``; raise on the first unsafe member.

    ``max_image_bytes`` caps the regular files directly under ``images/`` together,
    ``max_bytes`` everything else; ``max_header_bytes`` each PAX or GNU long-name header.
    Links are created last, after every file was written, and only to a file or directory
    of the bundle reached without passing through another link; nothing is ever written
    through a link. On error ``dest`` may hold a partial tree: the caller discards it.
    """
    totals = {False: 0, True: 0}
    caps = {False: max_bytes, True: max_image_bytes}
    kinds: dict[tuple[str, ...], bytes] = {}
    links: list[tuple[tuple[str, ...], str]] = []
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tree = _Tree(dest)
    except OSError as err:
        raise ArchiveError(f"cannot unpack {archive.name}: {err}") from err
    try:
        with archive.open("rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            stream_cap = max_bytes + max_image_bytes + 1024 * 1024
            capped = io.BufferedReader(_CappedReader(reader, stream_cap))
            tar = TarReader(capped, max_header_bytes=max_header_bytes)
            for count, member in enumerate(tar, start=1):
                if count > max_members:
                    raise ArchiveError(f"bundle archive has more than {max_members} members")
                parts = _check_member(member)
                previous = kinds.get(parts)
                if previous is not None and not (previous == DIRECTORY and member.isdir()):
                    raise ArchiveError(f"archive member {member.name!r} appears twice")
                if any(kinds.get(parts[:i]) not in (None, DIRECTORY) for i in range(1, len(parts))):
                    raise ArchiveError(
                        f"archive member {member.name!r} passes through a link or file"
                    )
                kinds[parts] = member.type if not member.isreg() else b"0"
                image = member.isreg() and parts[:-1] == (IMAGES_DIR,)
                totals[image] += member.size
                if totals[image] > caps[image]:
                    what = "its image archives are" if image else "bundle archive is"
                    raise ArchiveError(f"{what} larger than {caps[image]} bytes")
                if member.isdir():
                    tree.directory(parts)
                elif member.issym():
                    links.append((parts, member.linkname))
                else:
                    mode = 0o755 if member.mode & 0o111 else 0o644
                    tree.file(parts, mode, tar.read_data(member))
            for parts, target in links:
                _link_target(parts, target, kinds)
            for parts, target in links:
                tree.symlink(parts, target)
    except zstandard.ZstdError as err:
        raise ArchiveError(f"{archive.name} is not a valid tar.zst bundle: {err}") from err
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(
                f"the disk filled while unpacking {archive.name}",
                hint="free space on the data partition; the bundle is retried",
            ) from err
        raise ArchiveError(f"cannot unpack {archive.name}: {err}") from err
    finally:
        tree.close()
