"""A chroot with /proc, /sys, /dev and /dev/pts mounted, unmounted again whatever happens."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from fleetcore.run import run
from image.backends import mounts

_MOUNTS = [
    (["-t", "proc", "proc"], "proc"),
    (["-t", "sysfs", "sysfs"], "sys"),
    (["--bind", "/dev"], "dev"),
    (["--bind", "/dev/pts"], "dev/pts"),
]


@contextlib.contextmanager
def mounted(rootfs: Path) -> Iterator[Path]:
    """Mount the pseudo filesystems in ``rootfs``; on the way out (an error or a signal turned
    into one included) unmount everything below it, lazily if something still holds it."""
    rootfs = rootfs.resolve()
    try:
        for args, target in _MOUNTS:
            path = rootfs / target
            path.mkdir(parents=True, exist_ok=True)
            run(["mount", *args, path])
        yield rootfs
    finally:
        mounts.unmount_under(rootfs)


def chroot_argv(rootfs: Path, *argv: str) -> list[str]:
    return ["chroot", str(rootfs), *argv]
