"""Room for the updater's own records on a full /data.

Roles, Docker and logs share /data with the updater, and all run as root, so no free-space
floor can stop the others from filling the partition. The updater therefore keeps a small
reserve file (``/data/fleet/reserve``, :data:`RESERVE_BYTES`) whose blocks are allocated:
when a write of the update state, the queue's cursor, the install attempts or the identity
fails with ENOSPC, the reserve is released and the write tried once more, so the daemon
starts, saves its state and heartbeats with /data at 100 %. The agent re-creates the reserve
once the space is back. What only grows (the event journal, a staged install) is instead
kept above a free-space floor (:func:`free_bytes`), so it never eats into the reserve.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

# The state (~1 KiB), the cursor and the attempts file, each written beside its old copy by
# an atomic replace, many times over; 2 MiB is also a full event journal (1000 events of
# up to ~2 KiB) should one have to be rewritten.
RESERVE_BYTES = 2 << 20
_T = TypeVar("_T")


def free_bytes(path: Path) -> int:
    """Free bytes for root on the filesystem holding ``path`` (0 when it cannot be told)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


class Reserve:
    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self.size = size

    def ensure(self) -> bool:
        """Allocate the reserve when missing and there is room for it twice over; True when
        it is in place afterwards. Never raises: a missing reserve only weakens a guarantee."""
        try:
            if self.path.stat().st_size >= self.size:
                return True
        except OSError:
            pass
        if free_bytes(self.path.parent) < 2 * self.size:
            return False
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                # Allocated, not sparse: freeing it must give blocks back.
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(self.path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            log.warning("cannot allocate the space reserve %s: %s", self.path, err.strerror)
            return False
        log.info("space reserve %s in place (%d bytes)", self.path, self.size)
        return True

    def release(self) -> bool:
        """Free the reserve; True when there was one to free."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as err:
            log.error("cannot release the space reserve %s: %s", self.path, err.strerror)
            return False
        log.warning("/data is full: released the updater's space reserve %s", self.path)
        return True

    def write(self, action: Callable[[], _T]) -> _T:
        """Run ``action`` (a write); on ENOSPC release the reserve and run it once more."""
        try:
            return action()
        except OSError as err:
            if err.errno != errno.ENOSPC or not self.release():
                raise
        return action()


def write_through(reserve: Reserve | None, action: Callable[[], _T]) -> _T:
    """:meth:`Reserve.write` when there is a reserve, else just ``action()``."""
    return reserve.write(action) if reserve is not None else action()
