"""Power-cut-safe file writes: temp file, fsync, rename, fsync the directory.

On FAT (the config partition the Raspberry Pi firmware reads) fsync of a file and of its
directory does not order the FAT table against the directory entry: writes there go through
:func:`atomic_write_fat`, which flushes the whole filesystem around the rename (ADR 0025).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

_libc = ctypes.CDLL(None, use_errno=True)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(path: Path) -> None:
    """Write back every dirty block of the filesystem holding ``path`` (syncfs(2)).

    Unlike fsync it covers the filesystem's own metadata too: on vfat the FAT table, the
    directory entries and the file data all reach the device.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs: {os.strerror(code)}", str(path))
    finally:
        os.close(fd)


def _nothing(folder: Path) -> None:
    """No flush needed at this point."""


@contextlib.contextmanager
def _replacing(
    path: Path,
    mode: int,
    before_rename: Callable[[Path], None],
    after_rename: Callable[[Path], None],
) -> Iterator[IO[bytes]]:
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        before_rename(path.parent)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    after_rename(path.parent)


def atomic_open(path: Path, *, mode: int = 0o644) -> contextlib.AbstractContextManager[IO[bytes]]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path`` durably.

    On an exception the temp file is removed and ``path`` is untouched, so a reader
    (or the Raspberry Pi firmware) sees either the old or the new file, never a torn one.
    """
    return _replacing(path, mode, _nothing, fsync_dir)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    with atomic_open(path, mode=mode) as handle:
        handle.write(data)


def atomic_write_fat(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` on a FAT filesystem so that a power cut leaves the old or the new file.

    vfat's fsync does not order the FAT table, the directory entry and the data: a cut soon
    after a plain :func:`atomic_write` has left a directory entry pointing at a cluster the FAT
    marked free. So the whole filesystem is flushed before the rename (the temp file's data,
    cluster chain and entry are on the card) and after it (the renamed entry and the old
    file's freed clusters), leaving only the rename's own sector writes exposed to a cut.
    """
    with _replacing(path, mode, syncfs, syncfs) as handle:
        handle.write(data)


def scrub_fat(path: Path, data: bytes) -> None:
    """Overwrite ``path`` in place with ``data`` padded with newlines to its old length, and
    flush: the clusters that held the old bytes now hold ``data``.

    A rename leaves the replaced file's clusters free but unchanged, so a secret removed by
    :func:`atomic_write_fat` alone stays readable in the raw card (ADR 0076). ``data`` must be
    a valid file itself with the padding (a power cut can leave this version); fleet.yaml is
    YAML, to which trailing newlines add nothing.
    """
    with path.open("r+b") as handle:
        old = handle.seek(0, os.SEEK_END)
        handle.seek(0)
        handle.write(data.ljust(old, b"\n"))
        handle.flush()
        os.fsync(handle.fileno())
    syncfs(path.parent)


def remove_fat(path: Path) -> None:
    """Delete ``path`` from a FAT filesystem and flush it (a missing file is no error)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    syncfs(path.parent)


def mkdir_fat(path: Path) -> None:
    """Create the directory ``path`` on a FAT filesystem, if missing, and flush it."""
    if not path.is_dir():
        path.mkdir()
        syncfs(path.parent)
