from pathlib import Path

import pytest

from fleetcore import atomic
from fleetcore.atomic import (
    atomic_open,
    atomic_write,
    atomic_write_fat,
    mkdir_fat,
    remove_fat,
    syncfs,
)


def test_replaces_content_and_mode(tmp_path):
    target = tmp_path / "autoboot.txt"
    target.write_bytes(b"old")
    atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["autoboot.txt"]


def test_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "state.json"
    target.write_bytes(b"committed")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"half")
        raise RuntimeError("power cut")
    assert target.read_bytes() == b"committed"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_fat_write_flushes_the_filesystem_before_and_after_the_rename(tmp_path, monkeypatch):
    target = tmp_path / "autoboot.txt"
    target.write_bytes(b"old")
    steps: list[str] = []
    real_syncfs, real_replace = atomic.syncfs, Path.replace

    def spy_syncfs(path: Path) -> None:
        steps.append(f"syncfs {path.name}:{target.read_bytes().decode()}")
        real_syncfs(path)

    def spy_replace(self: Path, dest: Path) -> Path:
        steps.append("rename")
        return real_replace(self, dest)

    monkeypatch.setattr(atomic, "syncfs", spy_syncfs)
    monkeypatch.setattr(Path, "replace", spy_replace)
    atomic_write_fat(target, b"new", mode=0o600)
    where = tmp_path.name
    assert steps == [f"syncfs {where}:old", "rename", f"syncfs {where}:new"]
    assert target.read_bytes() == b"new"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["autoboot.txt"]


def test_fat_write_failing_flush_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "fleet.yaml"
    target.write_bytes(b"old")

    def failing(path: Path) -> None:
        raise OSError(5, "syncfs: Input/output error")

    monkeypatch.setattr(atomic, "syncfs", failing)
    with pytest.raises(OSError, match="Input/output"):
        atomic_write_fat(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.yaml"]


def test_fat_remove_and_mkdir_flush_only_on_change(tmp_path, monkeypatch):
    flushed: list[Path] = []
    monkeypatch.setattr(atomic, "syncfs", flushed.append)
    mkdir_fat(tmp_path / "simfw")
    mkdir_fat(tmp_path / "simfw")
    (tmp_path / "simfw" / "tryboot").write_bytes(b"1\n")
    remove_fat(tmp_path / "simfw" / "tryboot")
    remove_fat(tmp_path / "simfw" / "tryboot")
    assert flushed == [tmp_path, tmp_path / "simfw"]
    assert list((tmp_path / "simfw").iterdir()) == []


def test_syncfs_reports_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        syncfs(tmp_path / "absent")
