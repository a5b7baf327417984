"""One updater at a time: the daemon and the CLI take the same lock on /data."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from updater.errors import UpdateStateError


@contextlib.contextmanager
def updater_lock(path: Path, *, wait: bool) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as err:
            raise UpdateStateError(
                "another fleet-updater is working on an update",
                hint="wait for it, or stop the service: systemctl stop fleet-updater",
            ) from err
        yield
    finally:
        os.close(fd)
