import pytest

from fleetcore.atomic import atomic_open, atomic_write


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
