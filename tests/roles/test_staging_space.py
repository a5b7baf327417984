"""/data full: failed and stale stages are removed, and staging checks free space first.

The space cases run on a small tmpfs standing in for /data (integration: they need root, and
fail rather than skip without it, like every integration test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fleetcore.version import Version
from fleetcore.wire import DesiredRole
from updater.roles.archive import pack
from updater.roles.manager import FetchedBundle, ManagerConfig, RoleManager, RoleOutcome
from updater.roles.state import load_state

from .helpers import REPO, make_bundle
from .test_manager_unit import Engine

MIB = 1024 * 1024


def desired(version: str) -> DesiredRole:
    return DesiredRole(name="webapp", version=Version(version), target=f"roles/webapp/{version}")


def manager(root: Path, events: list, **options: Any) -> RoleManager:
    config = ManagerConfig(device_id="d", root=root, safe_mode_bundle=REPO / "safe-mode", **options)
    return RoleManager(config, on_event=events.append, inspector=Engine(True))


def stages(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("*/.staging-*"))


def test_a_failed_stage_is_removed_and_stale_ones_too(tmp_path):
    pack(make_bundle(tmp_path / "good"), tmp_path / "1.0.0.tar.zst")
    root = tmp_path / "roles"
    (root / "webapp" / ".staging-0.9.0" / "config").mkdir(parents=True)  # a crash's leftover
    events: list = []
    mgr = manager(root, events)
    fetch = lambda role: FetchedBundle(tmp_path / "1.0.0.tar.zst")  # noqa: E731
    for version in ("2.0.0", "3.0.0", "4.0.0"):  # each one the wrong version: each fails
        assert mgr.apply([desired(version)], fetch) == {"webapp": RoleOutcome.FAILED}
    assert stages(root) == []


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MiB filesystem for the role root."""
    mount = tmp_path / "data"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.fail("mounting a tmpfs needs root and mount(8): run scripts/test as root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mount]).returncode:
        pytest.fail(f"cannot mount a tmpfs on {mount}")
    yield mount
    subprocess.run(["umount", mount], check=True)


def zeros_bundle(tmp_path: Path, size: int) -> Path:
    bundle = make_bundle(tmp_path / "big")
    (bundle / "config" / "blob").write_bytes(bytes(size))  # compresses to almost nothing
    pack(bundle, tmp_path / "big.tar.zst")
    return tmp_path / "big.tar.zst"


def free(path: Path) -> int:
    usage = os.statvfs(path)
    return usage.f_bavail * usage.f_frsize


@pytest.mark.integration
def test_a_bundle_that_fills_the_disk_is_cleaned_up_and_retried(tmp_path, small_fs):
    archive = zeros_bundle(tmp_path, 40 * MIB)
    before = free(small_fs)
    events: list = []
    mgr = manager(small_fs / "roles", events, reserve_bytes=MIB)
    assert mgr.apply([desired("1.0.0")], lambda role: FetchedBundle(archive)) == {
        "webapp": RoleOutcome.FAILED
    }
    assert "the disk filled while unpacking" in (events[0].reason or "")
    assert stages(small_fs / "roles") == []
    assert free(small_fs) > before - MIB  # only the state file remains
    state = load_state(small_fs / "roles" / ".roles-state.json")
    assert state.roles["webapp"].bad_versions == []  # transient: retried, not marked bad


@pytest.mark.integration
def test_staging_is_refused_before_writing_when_the_estimate_does_not_fit(tmp_path, small_fs):
    archive = zeros_bundle(tmp_path, MIB)
    events: list = []
    mgr = manager(small_fs / "roles", events, reserve_bytes=32 * MIB)
    assert mgr.apply([desired("1.0.0")], lambda role: FetchedBundle(archive)) == {
        "webapp": RoleOutcome.FAILED
    }
    reason = events[0].reason or ""
    assert "not enough free space to stage webapp 1.0.0" in reason
    assert "32 MiB reserve" in reason
    assert stages(small_fs / "roles") == []
