"""The agent's bridge to the role manager, on a real RoleManager in a temp directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcore import redact
from fleetcore.release import Hardware
from fleetcore.rolebundle.spec import UNRESOLVED_DIGEST
from fleetcore.version import Version
from fleetcore.wire import DesiredState, DesiredVariable, EventKind
from updater.cli import main
from updater.queue import EventQueue
from updater.roles.manager import ManagerConfig, RoleEvent, RoleManager
from updater.rolesync import RoleSync


def _sync(tmp_path) -> tuple[RoleSync, EventQueue]:
    def no_client():
        raise AssertionError("a device without roles must not open the release repository")

    events = EventQueue(tmp_path / "queue", max_items=10)
    manager = RoleManager(ManagerConfig(device_id="dev-1", root=tmp_path / "roles"))
    sync = RoleSync(
        manager=manager,
        events=events,
        open_client=no_client,
        cache_dir=tmp_path / "cache",
        hardware=Hardware.PI4,
    )
    return sync, events


def test_no_roles_assigned_and_none_installed_is_a_no_op(tmp_path):
    sync, events = _sync(tmp_path)
    sync.sync(DesiredState())
    assert sync.status() == []
    assert sync.health() == []
    assert len(events) == 0


def test_without_roles_the_configuration_is_applied_and_its_secrets_masked(tmp_path):
    sync, _events = _sync(tmp_path)
    assert sync.applied_digest is None
    secret = "no-role-secret-91c2"
    sync.sync(
        DesiredState(
            config={"PW": DesiredVariable(value=secret, secret=True)}, config_digest="e" * 64
        )
    )
    assert sync.applied_digest == "e" * 64
    assert redact.SECRETS.mask(f"quoted {secret}!") == "quoted ***!"


def test_role_events_reach_the_queue_and_the_log(tmp_path, caplog):
    sync, events = _sync(tmp_path)
    caplog.set_level("INFO", logger="updater.rolesync")
    sync.manager.on_event(
        RoleEvent(EventKind.ROLE_ROLLBACK, "camera", Version("1.2.0"), "rolled back", "unhealthy")
    )
    (event,) = events.pending()
    assert event.kind is EventKind.ROLE_ROLLBACK
    assert event.version == Version("1.2.0")
    assert event.reason == "unhealthy"
    assert event.data == {"role": "camera"}
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == "role-rollback camera 1.2.0: rolled back (unhealthy)"


SHIPPED = sorted(p.parent.name for p in Path("roles").glob("*/role.yaml"))


def test_every_role_is_checked():
    assert {"camera-single", "camera-dual", "zigbee-hub", "audio-player", "system"} <= set(SHIPPED)


@pytest.mark.parametrize("role", [f"roles/{name}" for name in SHIPPED] + ["safe-mode"])
def test_fleet_updater_roles_validate(role, capsys):
    assert main(["roles", "validate", role]) == 0
    name = role.rsplit("/", 1)[-1]
    assert capsys.readouterr().out.startswith(f"{role}: ok ({name} ")


@pytest.mark.parametrize("role", SHIPPED)
def test_fleet_updater_roles_pack_refuses_only_unresolved_digests(role, tmp_path, capsys):
    status = main(["roles", "pack", f"roles/{role}", str(tmp_path / "out.tar.zst")])
    # A role whose image digest is not resolved yet says so in its README.
    unresolved = UNRESOLVED_DIGEST in Path(f"roles/{role}/role.yaml").read_text()
    assert status == (1 if unresolved else 0)
    if status:
        assert "placeholder" in capsys.readouterr().err
