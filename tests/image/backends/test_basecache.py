"""The base-rootfs cache keeps the two most recently used bases and drops older ones."""

from __future__ import annotations

import os
from pathlib import Path

from image.backends import basecache

HOUR = 3600.0


def _entry(cache: Path, key: str, used_at: float) -> Path:
    entry = cache / key
    (entry / "rootfs/usr").mkdir(parents=True)
    (entry / "rootfs/usr/marker").write_text(key)
    os.utime(entry, (used_at, used_at))
    return entry


def test_only_the_two_most_recently_used_bases_stay(tmp_path: Path):
    now = 10 * 24 * HOUR
    for age_days, key in enumerate(["new", "older", "oldest", "ancient"]):
        _entry(tmp_path, key, now - age_days * 24 * HOUR)
    (tmp_path / ".lock-new").touch()
    (tmp_path / ".partial-1-x").mkdir()

    removed = basecache.prune(tmp_path, now=now)

    assert sorted(p.name for p in removed) == ["ancient", "oldest"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock-ancient", ".lock-new",
        ".lock-oldest", ".partial-1-x", "new", "older"]  # fmt: skip


def test_a_base_used_within_the_hour_is_kept_however_many_there_are(tmp_path: Path):
    now = 100 * HOUR
    for minutes, key in enumerate(["a", "b", "c"]):
        _entry(tmp_path, key, now - 10 * 60 * minutes)

    assert basecache.prune(tmp_path, now=now) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


def test_marking_a_base_used_saves_it_from_the_next_prune(tmp_path: Path):
    now = 100 * HOUR
    for hours, key in enumerate(["a", "b", "c"]):
        _entry(tmp_path, key, now - 2 * HOUR * (hours + 1))
    basecache.mark_used(tmp_path / "c")

    removed = basecache.prune(tmp_path)

    assert [p.name for p in removed] == ["b"]
