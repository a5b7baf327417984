"""A chroot with /proc, /sys, /dev and /dev/pts mounted, unmounted again whatever happens."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from fleetcore.run import run

_MOUNTS = [
    (["-t", "proc", "proc"], "proc"),
    (["-t", "sysfs", "sysfs"], "sys"),
    (["--bind", "/dev"], "dev"),
    (["--bind", "/dev/pts"], "dev/pts"),
]


@contextlib.contextmanager
def mounted(rootfs: Path) -> Iterator[Path]:
    done: list[Path] = []
    try:
        for args, target in _MOUNTS:
            path = rootfs / target
            path.mkdir(parents=True, exist_ok=True)
            run(["mount", *args, path])
            done.append(path)
        yield rootfs
    finally:
        for path in reversed(done):
            run(["umount", "--lazy", path], check=False)


def chroot_argv(rootfs: Path, *argv: str) -> list[str]:
    return ["chroot", str(rootfs), *argv]
