"""The role manager's persisted state."""

from __future__ import annotations

import pytest

from fleetcore.version import Version
from updater.roles.errors import StateError
from updater.roles.state import (
    MAX_BAD_VERSIONS,
    ManagerState,
    RoleRecord,
    SafeModeCause,
    SafeModeRecord,
    load_or_reset,
    load_state,
    save_state,
)


def test_round_trip(tmp_path):
    state = ManagerState()
    state.role("webapp").pending = Version("1.2.0")
    state.safe_mode = SafeModeRecord(cause=SafeModeCause.OPERATOR, reason="bench")
    save_state(tmp_path / "s.json", state)
    assert load_state(tmp_path / "s.json") == state


def test_missing_file_is_a_fresh_state(tmp_path):
    assert load_state(tmp_path / "absent.json") == ManagerState()


def test_corrupt_file_is_set_aside(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"format": 1, "roles": {"webapp": {"failures": -1}}}')
    with pytest.raises(StateError, match="corrupt"):
        load_state(path)
    assert load_or_reset(path) == ManagerState()
    assert (tmp_path / "s.json.corrupt").exists() and not path.exists()


def test_bad_versions_are_bounded_and_unique():
    record = RoleRecord()
    for minor in range(MAX_BAD_VERSIONS + 5):
        record.mark_bad(Version(f"1.{minor}"))
    record.mark_bad(Version(f"1.{MAX_BAD_VERSIONS + 4}"))
    assert len(record.bad_versions) == MAX_BAD_VERSIONS
    assert record.bad_versions[-1] == Version(f"1.{MAX_BAD_VERSIONS + 4}")


def test_confirmed_only_rises_and_a_session_1_state_file_still_loads(tmp_path):
    record = RoleRecord()
    record.confirm(Version("2.0.0"))
    record.confirm(Version("1.0.0"))  # a rollback ran an older version: the mark stays
    assert record.confirmed == Version("2.0.0")
    old = tmp_path / "old.json"
    old.write_text('{"format": 1, "roles": {"webapp": {"failures": 1, "bad_versions": []}}}')
    loaded = load_state(old).roles["webapp"]
    assert (loaded.floor, loaded.confirmed, loaded.failures) == (None, None, 1)
