"""Role-manager decisions that end before Docker is involved."""

from __future__ import annotations

import pytest
import yaml

from fleetcore.errors import FleetError
from fleetcore.rolebundle.bundle import load_bundle
from fleetcore.rolebundle.errors import BundleError, TemplateError
from fleetcore.version import Version
from fleetcore.wire import DesiredRole, EventKind
from updater.roles.archive import pack
from updater.roles.compose import ComposeFlavor
from updater.roles.manager import FetchedBundle, ManagerConfig, RoleManager, RoleOutcome
from updater.roles.state import load_state

from .helpers import REPO, make_bundle

SHIPPED = sorted(p.parent for p in (REPO / "roles").glob("*/role.yaml"))


class Engine:
    """Stands in for the engine's availability probe only: these decisions end before Docker."""

    def __init__(self, up=True):
        self.up = up

    def available(self):
        return self.up

    def containers(self, project):
        raise AssertionError("these decisions end before Docker")


def manager(tmp_path, events, *, engine_up=True):
    config = ManagerConfig(
        device_id="d", root=tmp_path / "roles", safe_mode_bundle=REPO / "safe-mode"
    )
    return RoleManager(config, on_event=events.append, inspector=Engine(engine_up))


def test_nothing_is_attempted_while_the_engine_is_down(tmp_path):
    events: list = []

    def fetch(role):
        raise AssertionError("must not fetch")

    assert manager(tmp_path, events, engine_up=False).apply([desired()], fetch) == {
        "webapp": RoleOutcome.SKIPPED
    }
    assert events == []
    assert not (tmp_path / "roles" / ".roles-state.json").exists()


def desired(version="1.0.0", name="webapp"):
    return DesiredRole(name=name, version=Version(version), target=f"roles/{name}/{version}")


def test_a_bundle_that_is_not_the_desired_version_is_marked_bad(tmp_path):
    events: list = []
    pack(make_bundle(tmp_path / "good"), tmp_path / "1.0.0.tar.zst")
    fetched = []

    def fetch(role):
        fetched.append(role.version)
        return FetchedBundle(tmp_path / "1.0.0.tar.zst")

    mgr = manager(tmp_path, events)
    assert mgr.apply([desired("2.0.0")], fetch) == {"webapp": RoleOutcome.FAILED}
    assert events[0].kind is EventKind.ROLE_FAILED
    assert "bundle is webapp 1.0.0, expected webapp 2.0.0" in (events[0].reason or "")
    assert load_state(tmp_path / "roles" / ".roles-state.json").roles["webapp"].bad_versions == [
        Version("2.0.0")
    ]
    assert mgr.apply([desired("2.0.0")], fetch) == {"webapp": RoleOutcome.SKIPPED}
    assert fetched == [Version("2.0.0")]
    assert not (tmp_path / "roles" / "webapp" / "current").exists()


def test_a_missing_device_fails_without_marking_the_version_bad(tmp_path):
    events: list = []
    bundle = make_bundle(tmp_path / "b")
    role = (bundle / "role.yaml").read_text()
    (bundle / "role.yaml").write_text(
        role.replace("state:\n", "devices:\n  - path: /dev/fleet-test-absent\nstate:\n")
    )
    compose = (bundle / "compose.yaml").read_text()
    (bundle / "compose.yaml").write_text(
        compose.replace(
            "    init: true\n",
            "    init: true\n    devices:\n      - /dev/fleet-test-absent:/dev/x\n",
        )
    )
    pack(bundle, tmp_path / "b.tar.zst")
    mgr = manager(tmp_path, events)
    assert mgr.apply([desired()], lambda role: FetchedBundle(tmp_path / "b.tar.zst")) == {
        "webapp": RoleOutcome.FAILED
    }
    assert "needs /dev/fleet-test-absent" in (events[0].reason or "")
    state = load_state(tmp_path / "roles" / ".roles-state.json")
    assert state.roles["webapp"].bad_versions == []
    assert state.roles["webapp"].failures == 0


def test_a_fetch_failure_is_reported_and_retried(tmp_path):
    events: list = []

    def fetch(role):
        raise FleetError("download failed: connection refused")

    mgr = manager(tmp_path, events)
    assert mgr.apply([desired()], fetch) == {"webapp": RoleOutcome.FAILED}
    assert events[0].message == "cannot stage bundle"
    assert load_state(tmp_path / "roles" / ".roles-state.json").roles["webapp"].bad_versions == []


def test_the_safe_mode_name_cannot_be_assigned(tmp_path):
    events: list = []
    outcome = manager(tmp_path, events).apply(
        [desired(name="safe-mode")], lambda role: FetchedBundle(tmp_path)
    )
    assert outcome == {"safe-mode": RoleOutcome.FAILED}
    assert events[0].message == "invalid role name"


@pytest.mark.parametrize("flavor", [ComposeFlavor.V2, ComposeFlavor.V1], ids=lambda f: f.value)
@pytest.mark.parametrize("role", SHIPPED, ids=lambda p: p.name)
def test_shipped_roles_stage_and_compose_accepts_them(tmp_path, role, flavor):
    """Staging renders .env and the limits override and asks compose (v2 and v1) to parse it."""
    config_dir = tmp_path / "role-config"
    config_dir.mkdir()
    (config_dir / "system.yaml").write_text(
        "loki_url: http://loki.example:3100/loki/api/v1/push\nloki_password: pw\n"
    )
    mgr = RoleManager(
        ManagerConfig(
            device_id="d",
            root=tmp_path / "roles",
            safe_mode_bundle=REPO / "safe-mode",
            role_config_dir=config_dir,
            compose=flavor,
        )
    )
    spec = load_bundle(role).spec
    bundle = mgr.stage(spec.name, role, spec.version)
    staged = tmp_path / "roles" / spec.name / str(spec.version)
    assert bundle.path == staged
    assert f"ROLE_STATE={tmp_path / 'roles' / spec.name / 'state'}" in (staged / ".env").read_text()
    override = yaml.safe_load((staged / "fleet.override.yaml").read_text())
    assert set(override["services"]) == set(spec.limits)


def test_staging_rejects_a_bundle_compose_cannot_parse(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    compose = (bundle / "compose.yaml").read_text()
    broken = compose.replace("      retries: 2\n", "      retries: two\n")
    (bundle / "compose.yaml").write_text(broken)
    mgr = manager(tmp_path, [])
    with pytest.raises(BundleError, match="docker compose rejects the bundle"):
        mgr.stage("webapp", bundle, Version("1.0.0"))
    assert not (tmp_path / "roles" / "webapp" / "1.0.0").exists()


def test_missing_required_config_names_the_value(tmp_path):
    mgr = manager(tmp_path, [])
    with pytest.raises(TemplateError, match="loki_url"):
        mgr.stage("system", REPO / "roles" / "system", Version("1.0.0"))


@pytest.mark.parametrize("prefix", ["_t", "-t", "T"])
def test_project_prefix_is_a_valid_compose_v2_project_name_start(prefix):
    with pytest.raises(ValueError, match="project_prefix"):
        ManagerConfig(device_id="d", project_prefix=prefix)
