"""Role bundles as ``tar.zst`` TUF targets: deterministic packing and safe unpacking.

Unpacking trusts nothing about the archive even though TUF verified it: members must be
regular files, directories or relative symlinks that stay inside the bundle; no absolute
names, no ``..``, no hard links, no device nodes or fifos; the member count is capped, the
size is capped (the image archives under ``images/`` and everything else separately), and the
decompressed stream itself is capped so a zstd bomb stops early.
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
from updater.roles.images import IMAGES_DIR, archive_name, check_archive, local_ids
from updater.roles.spec import UNRESOLVED_DIGEST, RoleSpec

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
    max_image_bytes: int = MAX_IMAGE_BYTES,
    max_members: int = MAX_MEMBERS,
) -> None:
    """Unpack ``archive`` into the empty directory ``dest``; raise on the first unsafe member.

    ``max_image_bytes`` caps the regular files directly under ``images/`` together,
    ``max_bytes`` everything else.
    """
    totals = {False: 0, True: 0}
    caps = {False: max_bytes, True: max_image_bytes}
    members = 0
    try:
        with archive.open("rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            stream_cap = max_bytes + max_image_bytes + 1024 * 1024
            capped = io.BufferedReader(_CappedReader(reader, stream_cap))
            with tarfile.open(fileobj=capped, mode="r|") as tar:
                for member in tar:
                    members += 1
                    if members > max_members:
                        raise ArchiveError(f"bundle archive has more than {max_members} members")
                    name = _check_member(member)
                    image = member.isreg() and posixpath.dirname(name) == IMAGES_DIR
                    totals[image] += member.size
                    if totals[image] > caps[image]:
                        what = "its image archives are" if image else "bundle archive is"
                        raise ArchiveError(f"{what} larger than {caps[image]} bytes")
                    _extract(tar, member, dest)
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as err:
        raise ArchiveError(f"{archive.name} is not a valid tar.zst bundle: {err}") from err
    except OSError as err:
        raise ArchiveError(f"cannot unpack {archive.name}: {err}") from err
