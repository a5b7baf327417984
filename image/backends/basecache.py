"""Bounding the base-rootfs cache: a new base replaces old ones instead of piling up beside them.

Each base is about 1 GiB, and its key changes whenever the package list or recipe does, so
without pruning every change leaves one more behind (CI machines start from snapshots of old
ones). A build marks the entry it uses (its mtime); when a new base is built, entries beyond
the ``keep`` most recently used go, unless one was used within ``in_use_s``: a build copies its
base after it lets go of the entry's lock, so a recent one may still be being read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from fleetcore.filelock import held
from image.backends import mounts

KEEP = 2
IN_USE_S = 3600.0
# Not entries: locks (.lock-<key>) and builds in progress (.partial-...).
_HIDDEN = "."


def lock_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{_HIDDEN}lock-{key}"


def mark_used(entry: Path) -> None:
    os.utime(entry)


def prune(
    cache_dir: Path, *, keep: int = KEEP, in_use_s: float = IN_USE_S, now: float | None = None
) -> list[Path]:
    """Remove the entries beyond the ``keep`` most recently used ones; return what went."""
    now = time.time() if now is None else now
    entries = sorted(
        (p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith(_HIDDEN)),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for entry in entries[keep:]:
        if now - entry.stat().st_mtime < in_use_s:
            continue
        with held(lock_path(cache_dir, entry.name)):
            mounts.remove_tree(entry)
        removed.append(entry)
    return removed
