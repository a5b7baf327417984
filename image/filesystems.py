"""Filesystem images made from folders without mounting anything (so it runs unprivileged).

vfat via mkfs.vfat + mtools, the system image via mkfs.erofs or mksquashfs, ext4 via
``mke2fs -d``. Every tool gets fixed ids and timestamps so equal inputs give equal bytes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fleetcore.errors import CommandError
from fleetcore.release import SystemFormat
from fleetcore.run import run
from image.errors import LayoutError
from image.layout import MIB

# FAT clusters plus directory entries: what the boot files need beyond their own bytes.
_VFAT_OVERHEAD = 1.1
_VFAT_RESERVED = 2 * MIB


class Compression(StrEnum):
    NONE = "none"
    LZ4 = "lz4"
    LZ4HC = "lz4hc"
    ZSTD = "zstd"
    XZ = "xz"
    GZIP = "gzip"


_SUPPORTED = {
    SystemFormat.EROFS: {Compression.NONE, Compression.LZ4, Compression.LZ4HC},
    SystemFormat.SQUASHFS: {
        Compression.NONE,
        Compression.LZ4,
        Compression.ZSTD,
        Compression.XZ,
        Compression.GZIP,
    },
}


# Compressions whose level can be chosen, with the tools' ranges.
_LEVELS = {
    (SystemFormat.SQUASHFS, Compression.ZSTD): (1, 22),
    (SystemFormat.SQUASHFS, Compression.GZIP): (1, 9),
    (SystemFormat.EROFS, Compression.LZ4HC): (1, 12),
}


# The fleet's level where it differs from the tool's default: mksquashfs's zstd default (15)
# took 175 s for the 1 GB rootfs, level 6 takes 9-11 s for an image 8% larger (ADR 0010).
DEFAULT_LEVELS = {(SystemFormat.SQUASHFS, Compression.ZSTD): 6}


class SystemSpec(BaseModel):
    """How the read-only system image is made (chosen by bench/bench_delta.py, ADR 0010)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: SystemFormat = SystemFormat.SQUASHFS
    compression: Compression = Compression.ZSTD
    level: int | None = Field(
        default=None, description="compression level; None: DEFAULT_LEVELS, else the tool's"
    )

    @classmethod
    def parse(cls, text: str) -> SystemSpec:
        """Parse ``squashfs``, ``squashfs:zstd``, ``squashfs:zstd:6`` or ``erofs:lz4hc``
        (default compression zstd for squashfs, lz4hc for erofs)."""
        fmt, _, rest = text.partition(":")
        comp, _, level = rest.partition(":")
        try:
            fs = SystemFormat(fmt)
            default = Compression.ZSTD if fs is SystemFormat.SQUASHFS else Compression.LZ4HC
            spec = cls(
                format=fs,
                compression=Compression(comp) if comp else default,
                level=int(level) if level else None,
            )
        except ValueError as err:
            raise LayoutError(
                f"invalid system image spec {text!r}: expected FORMAT[:COMPRESSION[:LEVEL]], "
                "for example erofs:lz4hc or squashfs:zstd:6"
            ) from err
        if spec.compression not in _SUPPORTED[spec.format]:
            raise LayoutError(f"{spec.format} cannot use {spec.compression} compression here")
        if spec.level is not None:
            low, high = _LEVELS.get((spec.format, spec.compression), (0, -1))
            if not low <= spec.level <= high:
                raise LayoutError(
                    f"{spec.format}:{spec.compression} takes no compression level "
                    f"{spec.level}" + (f" (levels {low}-{high})" if low <= high else "")
                )
        return spec

    def __str__(self) -> str:
        level = "" if self.level is None else f":{self.level}"
        return f"{self.format.value}:{self.compression.value}{level}"

    @property
    def effective_level(self) -> int | None:
        """The level the image is made with (None: the tool's own default)."""
        if self.level is not None:
            return self.level
        return DEFAULT_LEVELS.get((self.format, self.compression))


def tree_size(root: Path) -> int:
    """Bytes of the regular files below ``root`` (symlinks not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def clamp_mtimes(root: Path, epoch: int) -> None:
    """Set every mtime below ``root`` (and root itself) to ``epoch``."""
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.utime(Path(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def vfat_size_for(content: Path) -> int:
    """Bytes a FAT image needs to hold the files below ``content``, in whole MiB."""
    needed = int(tree_size(content) * _VFAT_OVERHEAD) + _VFAT_RESERVED
    return -(-needed // MIB) * MIB


def make_vfat(
    out: Path, *, size: int, label: str, volume_id: str, content: Path | None, epoch: int
) -> None:
    """A FAT32/16 image of ``size`` bytes holding the files below ``content``."""
    if content is not None:
        needed = vfat_size_for(content)
        if needed > size:
            raise LayoutError(
                f"boot files need about {needed // MIB} MiB but the {label} partition has "
                f"{size // MIB} MiB",
                hint="raise it with --sizes boot=SIZE (or config=SIZE)",
            )
    out.unlink(missing_ok=True)
    with out.open("wb") as handle:
        handle.truncate(size)
    run(["mkfs.vfat", "--invariant", "-i", volume_id, "-n", label.upper()[:11], out])
    if content is None:
        return
    clamp_mtimes(content, epoch)
    entries = sorted(content.iterdir())
    if not entries:
        return
    env = {"MTOOLS_SKIP_CHECK": "1", "SOURCE_DATE_EPOCH": str(epoch)}
    try:
        run(["mcopy", "-i", out, "-s", "-m", "-p", "-Q", *entries, "::/"], env=env)
    except CommandError as err:
        if "disk full" in err.stderr.lower():
            raise LayoutError(
                f"boot files do not fit the {label} partition ({size // MIB} MiB)"
            ) from err
        raise


def make_system(
    out: Path, *, src: Path, spec: SystemSpec, epoch: int, fs_uuid: str, exclude: Sequence[str]
) -> None:
    """The read-only system image of ``src`` without the paths in ``exclude`` (relative)."""
    out.unlink(missing_ok=True)
    if spec.format is SystemFormat.EROFS:
        argv: list[str | Path] = ["mkfs.erofs", "--quiet", f"-T{epoch}", f"-U{fs_uuid}"]
        if spec.compression is not Compression.NONE:
            level = "" if spec.effective_level is None else f",{spec.effective_level}"
            argv.append(f"-z{spec.compression.value}{level}")
        argv += [f"--exclude-regex=^{path}/." for path in exclude]
        run([*argv, out, src])
        return
    argv = [
        "mksquashfs", src, out, "-reproducible", "-no-progress", "-quiet",
        "-b", "128K", "-processors", str(os.cpu_count() or 1),
    ]  # fmt: skip
    if spec.compression is Compression.NONE:
        argv += ["-noI", "-noD", "-noF", "-noX"]
    else:
        argv += ["-comp", spec.compression.value]
        if spec.effective_level is not None:
            argv += ["-Xcompression-level", str(spec.effective_level)]
    if exclude:
        argv += ["-wildcards", "-e", *(f"{path}/*" for path in exclude)]
    # mksquashfs refuses -mkfs-time/-all-time when SOURCE_DATE_EPOCH is set, and it sets both.
    run(argv, env={"SOURCE_DATE_EPOCH": str(epoch)})


def make_ext4(
    out: Path, *, size: int, label: str, fs_uuid: str, epoch: int, content: Path | None = None
) -> None:
    """An ext4 image of ``size`` bytes, holding the files below ``content`` (root-owned).

    ``mke2fs -d`` copies each source inode's ctime (which no caller can pin) and owner, so every
    inode copied in gets its times, owner and group fixed afterwards with ``debugfs``.
    """
    out.unlink(missing_ok=True)
    # e2fsprogs reads a fake time of 0 as "none" and takes the clock: epoch 0 (no
    # SOURCE_DATE_EPOCH) would make the image differ from one second to the next.
    env = {"E2FSPROGS_FAKE_TIME": str(max(epoch, 1))}
    populate: list[str | Path] = ["-d", content] if content is not None else []
    run(
        [
            "mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-U", fs_uuid,
            "-E", f"hash_seed={fs_uuid},root_owner=0:0", *populate, out, f"{size // 1024}k",
        ],
        env=env,
    )  # fmt: skip
    if content is None:
        return
    script = "".join(
        f'sif "{path}" {field} {value}\n'
        for path in _ext4_paths(content)
        for field, value in [
            ("atime", f"@{epoch}"), ("mtime", f"@{epoch}"), ("ctime", f"@{epoch}"),
            ("crtime", f"@{epoch}"), ("uid", "0"), ("gid", "0"),
        ]
    )  # fmt: skip
    run(["debugfs", "-w", "-f", "-", out], input=script.encode(), env=env)


def _ext4_paths(content: Path) -> list[str]:
    """``/``, mke2fs's ``/lost+found`` and every path below ``content``, sorted."""
    paths = ["/", "/lost+found"]
    for dirpath, dirs, files in os.walk(content):
        for name in [*dirs, *files]:
            rel = Path(dirpath, name).relative_to(content).as_posix()
            if '"' in rel or "\n" in rel:
                raise LayoutError(f"cannot place {rel!r} on an ext4 image")
            paths.append(f"/{rel}")
    return sorted(paths)
