"""The Overlord's configuration variables in roles (``vars``), on a real RoleManager with an
engine in memory (tests/roles/fakeengine.py): what reaches the ``.env``, when a role restarts,
what happens to values a template needs, and where secret values may go."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fleetcore import redact
from fleetcore.rolebundle.spec import APPLYING_FILE, ENV_TEMPLATE
from fleetcore.version import Version
from fleetcore.wire import DesiredRole, EventKind
from updater.roles.manager import FetchedBundle, RoleOutcome
from updater.roles.state import load_state

from .fakeengine import Harness, fake_harness
from .helpers import make_bundle

TEMPLATE = """\
GREETING={{ config.greeting | default("hello") }}
FPS={{ vars.CAMERA_FPS }}
STREAM_PASSWORD={{ vars.STREAM_PASSWORD | default("") }}
"""
SECRET = "rtsp-secret-7f3a"


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return fake_harness(tmp_path, monkeypatch)


def _bundle(tmp_path: Path, version: str = "1.0.0") -> Path:
    folder = tmp_path / f"webapp-{version}"
    if not folder.exists():
        make_bundle(folder, version=version)
        (folder / ENV_TEMPLATE).write_text(TEMPLATE)
    return folder


def _role(version: str = "1.0.0") -> DesiredRole:
    return DesiredRole(name="webapp", version=Version(version), target=f"roles/webapp/{version}")


def _apply(harness: Harness, tmp_path: Path, variables: dict[str, str] | None, version="1.0.0"):
    folder = _bundle(tmp_path, version)
    fetch = lambda _role: FetchedBundle(folder)  # noqa: E731
    return harness.manager.apply([_role(version)], fetch, variables=variables)["webapp"]


def _events(harness: Harness) -> list[tuple[EventKind, str, str | None]]:
    found = [(e.kind, e.message, e.reason) for e in harness.events]
    harness.events.clear()
    return found


def test_a_role_restarts_only_when_a_value_it_uses_changes(harness: Harness, tmp_path: Path):
    assert _apply(harness, tmp_path, {"CAMERA_FPS": "25", "UNUSED": "a"}) is RoleOutcome.APPLIED
    assert "FPS=25\n" in harness.env() and harness.restarts() == 1
    mode = (harness.root / "webapp" / "current" / ".env").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    _events(harness)

    # Unchanged, or changed where no template looks: the role is only checked.
    assert _apply(harness, tmp_path, {"CAMERA_FPS": "25", "UNUSED": "a"}) is RoleOutcome.UNCHANGED
    assert _apply(harness, tmp_path, {"CAMERA_FPS": "25", "UNUSED": "b"}) is RoleOutcome.UNCHANGED
    assert harness.restarts() == 1 and _events(harness) == []

    assert _apply(harness, tmp_path, {"CAMERA_FPS": "30"}) is RoleOutcome.APPLIED
    assert harness.restarts() == 2 and "FPS=30\n" in harness.compose.ups[-1].env
    assert _events(harness) == [
        (EventKind.ROLE_APPLIED, "restarted with the new configuration", "FPS changed")
    ]
    # No configuration in this apply (None): the last one stays.
    assert _apply(harness, tmp_path, None) is RoleOutcome.UNCHANGED
    assert harness.restarts() == 2


def test_the_device_own_role_config_changes_restart_too(harness: Harness, tmp_path: Path):
    _apply(harness, tmp_path, {"CAMERA_FPS": "25"})
    config_dir = harness.manager.config.role_config_dir
    config_dir.mkdir(parents=True)
    (config_dir / "webapp.yaml").write_text("greeting: moin\n")
    assert _apply(harness, tmp_path, {"CAMERA_FPS": "25"}) is RoleOutcome.APPLIED
    assert "GREETING=moin\n" in harness.env() and harness.restarts() == 2


def test_a_missing_value_is_retried_once_set_not_marked_bad(harness: Harness, tmp_path: Path):
    assert _apply(harness, tmp_path, {}) is RoleOutcome.FAILED
    ((kind, message, reason),) = _events(harness)
    assert (kind, message) == (EventKind.ROLE_FAILED, "cannot stage bundle")
    assert reason is not None and "CAMERA_FPS" in reason and "fleetctl config set" in reason
    state = load_state(harness.root / ".roles-state.json")
    assert state.roles["webapp"].bad_versions == []
    assert _apply(harness, tmp_path, {"CAMERA_FPS": "12"}) is RoleOutcome.APPLIED
    assert "FPS=12\n" in harness.env()


def test_a_configuration_the_template_cannot_take_leaves_the_role_running(
    harness: Harness, tmp_path: Path
):
    _apply(harness, tmp_path, {"CAMERA_FPS": "25"})
    assert _apply(harness, tmp_path, {}) is RoleOutcome.UNCHANGED
    assert harness.restarts() == 1 and "FPS=25\n" in harness.env()
    assert "CAMERA_FPS" in harness.manager.unconfigured["webapp"]
    assert _apply(harness, tmp_path, {"CAMERA_FPS": "25"}) is RoleOutcome.UNCHANGED
    assert harness.manager.unconfigured == {}


def test_a_restart_cut_short_is_done_again(harness: Harness, tmp_path: Path):
    _apply(harness, tmp_path, {"CAMERA_FPS": "25"})
    marker = harness.root / "webapp" / "current" / APPLYING_FILE
    marker.touch()  # the .env was rewritten, then the power went before compose up
    assert _apply(harness, tmp_path, {"CAMERA_FPS": "25"}) is RoleOutcome.APPLIED
    assert harness.restarts() == 2 and not marker.exists()
    assert _events(harness)[-1][2] == "a restart with new configuration was cut short"


def test_a_new_configuration_that_breaks_the_role_counts_and_a_fix_ends_the_loop(
    harness: Harness, tmp_path: Path
):
    harness.engine.sick = lambda env: "FPS=0\n" in env
    _apply(harness, tmp_path, {"CAMERA_FPS": "25"})
    _events(harness)
    assert _apply(harness, tmp_path, {"CAMERA_FPS": "0"}) is RoleOutcome.FAILED
    assert _events(harness)[0][:2] == (
        EventKind.ROLE_FAILED,
        "restart with the new configuration failed",
    )
    for _ in range(2):  # the same configuration: restarts fail until safe mode
        _apply(harness, tmp_path, {"CAMERA_FPS": "0"})
    state = load_state(harness.root / ".roles-state.json")
    assert state.safe_mode.tripped_by("webapp")
    assert _apply(harness, tmp_path, {"CAMERA_FPS": "0"}) is RoleOutcome.SKIPPED
    _events(harness)
    assert _apply(harness, tmp_path, {"CAMERA_FPS": "24"}) is RoleOutcome.APPLIED
    assert [kind for kind, _message, _reason in _events(harness)] == [
        EventKind.ROLE_APPLIED,
        EventKind.SAFE_MODE_LEFT,
    ]
    assert not load_state(harness.root / ".roles-state.json").safe_mode.active


def test_a_secret_value_is_written_into_the_env_and_nowhere_else(harness: Harness, tmp_path: Path):
    redact.SECRETS.add(SECRET)  # RoleSync does this with each desired state's secrets
    _apply(harness, tmp_path, {"CAMERA_FPS": "25", "STREAM_PASSWORD": SECRET})
    assert f"STREAM_PASSWORD={SECRET}\n" in harness.env()
    harness.compose.refuse = True  # compose fails quoting the .env
    _apply(harness, tmp_path, {"CAMERA_FPS": "26", "STREAM_PASSWORD": SECRET})
    said = repr(harness.events)
    assert "invalid interpolation" in said and SECRET not in said
    written = [
        path
        for path in tmp_path.rglob("*")
        if path.is_file() and SECRET.encode() in path.read_bytes()
    ]
    assert {path.name for path in written} == {".env"}, written
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in written)


def test_after_a_restart_of_the_agent_a_role_keeps_its_env_until_the_overlord_answers(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The secret values live only in the .env: a role started again before the first desired
    state (the agent just started, the Overlord out of reach) runs with the one it has."""
    _apply(harness, tmp_path, {"CAMERA_FPS": "25", "STREAM_PASSWORD": SECRET})
    again = fake_harness(tmp_path, monkeypatch)  # a new agent process: no configuration yet
    again.compose.ups = []  # the containers are gone (a reboot)
    assert _apply(again, tmp_path, None) is RoleOutcome.APPLIED
    assert f"STREAM_PASSWORD={SECRET}\n" in again.compose.ups[-1].env
    assert [e.message for e in again.events] == ["restarted and healthy"]
