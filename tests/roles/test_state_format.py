"""Role state across an A/B fallback: the previous release reads what this one writes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleetcore.version import Version
from updater.roles.state import (
    ManagerState,
    SafeModeCause,
    SafeModeRecord,
    load_or_reset,
    load_state,
    save_state,
)

from .helpers import REPO

PREVIOUS = "0236506"  # the release before role state carried a format version


def previous_reader(tmp_path: Path):
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{PREVIOUS}:updater/roles/state.py"],
        capture_output=True,
        check=True,
    ).stdout
    path = tmp_path / "previous_state.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("previous_state", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["previous_state"] = module  # pydantic resolves the annotations through it
    spec.loader.exec_module(module)
    return module


def rich_state() -> ManagerState:
    state = ManagerState()
    record = state.role("webapp")
    record.failures = 2
    record.mark_bad(Version("2.0.0"))
    record.pending = Version("2.1.0")
    record.confirm(Version("1.0.0"))
    record.last_error = "2.0.0: health gate failed"
    record.last_error_at = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    state.safe_mode = SafeModeRecord(
        cause=SafeModeCause.CRASH_LOOP, role="webapp", version=Version("1.0.0"), reason="crash"
    )
    return state


def test_the_previous_release_reads_what_this_one_writes(tmp_path):
    path = tmp_path / ".roles-state.json"
    save_state(path, rich_state())
    assert "format" not in json.loads(path.read_bytes())  # format 1.0: no key
    old = previous_reader(tmp_path).load_state(path)
    assert old.model_dump(mode="json", exclude={"format"}) == rich_state().model_dump(mode="json")


def test_this_release_reads_what_the_previous_one_wrote(tmp_path):
    path = tmp_path / ".roles-state.json"
    previous = previous_reader(tmp_path)
    old = previous.ManagerState()
    old.role("webapp").mark_bad(Version("3.0.0"))
    previous.save_state(path, old)
    assert json.loads(path.read_bytes())["format"] == 1
    assert load_state(path).roles["webapp"].bad_versions == [Version("3.0.0")]


def test_unknown_fields_of_a_newer_minor_are_ignored(tmp_path):
    path = tmp_path / ".roles-state.json"
    path.write_text(json.dumps({"format": "1.3", "roles": {"w": {"failures": 1, "new": 2}}}))
    assert load_state(path).roles["w"].failures == 1


def test_a_newer_major_is_set_aside_and_the_manager_starts_afresh(tmp_path, caplog):
    path = tmp_path / ".roles-state.json"
    path.write_text(json.dumps({"format": "2.0", "roles": {"w": {"failures": 5}}}))
    assert load_or_reset(path) == ManagerState()
    assert (tmp_path / ".roles-state.json.newer").exists()
    assert "format 2.0, newer than the 1.x" in caplog.text


@pytest.mark.parametrize("data", [b'{"roles": {}, "roles": {}}', b"[]", b'{"format": "x"}'])
def test_corrupt_state_is_quarantined(tmp_path, data):
    path = tmp_path / ".roles-state.json"
    path.write_bytes(data)
    assert load_or_reset(path) == ManagerState()
    assert (tmp_path / ".roles-state.json.corrupt").exists()


# What each cause has always been on disk: (active, manual, by_overlord).
FLAGS = {
    SafeModeCause.NONE: (False, False, False),
    SafeModeCause.CRASH_LOOP: (True, False, False),
    SafeModeCause.OPERATOR: (True, True, False),
    SafeModeCause.OVERLORD: (True, True, True),
}


@pytest.mark.parametrize("cause", list(SafeModeCause), ids=lambda c: c.value)
def test_each_safe_mode_cause_is_the_previous_release_s_booleans(tmp_path, cause):
    crash = cause is SafeModeCause.CRASH_LOOP
    state = ManagerState()
    if cause is not SafeModeCause.NONE:
        state.safe_mode = SafeModeRecord(
            cause=cause,
            reason="why",
            role="webapp" if crash else None,
            version=Version("2.0.0") if crash else None,
            since=datetime(2026, 12, 4, 3, 0, tzinfo=UTC),
        )
    path = tmp_path / ".roles-state.json"
    save_state(path, state)
    old = previous_reader(tmp_path).load_state(path).safe_mode
    assert (old.active, old.manual, old.by_overlord) == FLAGS[cause]
    assert (old.role, old.version) == (("webapp", Version("2.0.0")) if crash else (None, None))
    assert load_state(path) == state


@pytest.mark.parametrize(
    ("flags", "role", "cause"),
    [
        ((False, False, False), None, SafeModeCause.NONE),
        ((False, True, True), None, SafeModeCause.NONE),
        ((True, False, False), "webapp", SafeModeCause.CRASH_LOOP),
        ((True, True, False), None, SafeModeCause.OPERATOR),
        ((True, True, True), None, SafeModeCause.OVERLORD),
        # Never written by any release: a safe mode of unknown origin is left to a person.
        ((True, False, False), None, SafeModeCause.OPERATOR),
    ],
)
def test_the_previous_release_s_booleans_read_as_one_cause(tmp_path, flags, role, cause):
    previous = previous_reader(tmp_path)
    old = previous.ManagerState()
    old.safe_mode.active, old.safe_mode.manual, old.safe_mode.by_overlord = flags
    old.safe_mode.role = role
    path = tmp_path / ".roles-state.json"
    previous.save_state(path, old)
    safe = load_state(path).safe_mode
    assert safe.cause is cause
    assert safe.tripped_by("webapp") is (cause is SafeModeCause.CRASH_LOOP)
