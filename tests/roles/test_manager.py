"""The role manager against the real Docker engine: apply, upgrade, rollback, safe mode."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from fleetcore.release import role_target
from fleetcore.rolebundle.bundle import load_bundle
from fleetcore.version import Version
from fleetcore.wire import DesiredRole, Health
from updater.roles.archive import pack
from updater.roles.compose import ComposeFlavor
from updater.roles.errors import EngineError
from updater.roles.manager import FetchedBundle, RoleOutcome
from updater.roles.runtime import ensure_images

from .helpers import make_bundle

pytestmark = pytest.mark.integration


def publish(harness, version: str, *, healthy: bool = True) -> tuple[DesiredRole, Path]:
    """Pack a webapp bundle the way the build host does; return its desired-state entry."""
    source = make_bundle(
        harness.tmp / f"src-{version}", image=harness.image, version=version, healthy=healthy
    )
    archive = harness.tmp / f"webapp-{version}.tar.zst"
    pack(source, archive)
    desired = DesiredRole(
        name="webapp", version=Version(version), target=role_target("webapp", version)
    )
    return desired, archive


def fetcher(archives: dict[str, Path], floors: dict[str, str] | None = None):
    def fetch(role: DesiredRole) -> FetchedBundle:
        floor = (floors or {}).get(str(role.version))
        return FetchedBundle(archives[str(role.version)], Version(floor) if floor else None)

    return fetch


def page(harness, version: str) -> str:
    return (harness.config.root / "webapp" / "state" / "www" / "index.html").read_text()


def test_apply_then_upgrade(harness):
    (harness.tmp / "role-config").mkdir()
    (harness.tmp / "role-config" / "webapp.yaml").write_text("greeting: hi there\n")
    v1, a1 = publish(harness, "1.0.0")
    v2, a2 = publish(harness, "1.1.0")
    fetch = fetcher({"1.0.0": a1, "1.1.0": a2})
    manager = harness.manager()
    assert manager.compose.waits is (harness.flavor is ComposeFlavor.V2)

    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.APPLIED}
    assert "hi there from webapp 1.0.0 on test-device" in page(harness, "1.0.0")
    [status] = manager.status()
    assert (status.version, status.health) == (Version("1.0.0"), Health.HEALTHY)
    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.UNCHANGED}

    assert manager.apply([v2], fetch) == {"webapp": RoleOutcome.APPLIED}
    role = harness.config.root / "webapp"
    assert (role / "current").readlink() == Path("1.1.0")
    assert (role / "previous").readlink() == Path("1.0.0")
    assert "webapp 1.1.0" in page(harness, "1.1.0")
    assert harness.kinds() == ["role-applied", "role-applied"]
    env = (role / "1.1.0" / ".env").read_text()
    assert "GREETING=hi there" in env and f"ROLE_STATE={role / 'state'}" in env


def test_failing_health_check_rolls_back(harness):
    v1, a1 = publish(harness, "1.0.0")
    v2, a2 = publish(harness, "2.0.0", healthy=False)
    fetch = fetcher({"1.0.0": a1, "2.0.0": a2})
    manager = harness.manager()
    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.APPLIED}

    assert manager.apply([v2], fetch) == {"webapp": RoleOutcome.ROLLED_BACK}
    role = harness.config.root / "webapp"
    assert (role / "current").readlink() == Path("1.0.0")
    [status] = manager.status()
    assert (status.version, status.health) == (Version("1.0.0"), Health.HEALTHY)
    assert harness.kinds() == ["role-applied", "role-failed", "role-rollback"]
    assert "unhealthy" in (harness.events[1].reason or "")
    # The bad version is not retried: the device keeps running 1.0.0 quietly.
    assert manager.apply([v2], fetch) == {"webapp": RoleOutcome.UNCHANGED}
    assert len(harness.events) == 3


def test_a_failed_rollback_counts_towards_safe_mode(harness):
    v1, a1 = publish(harness, "1.0.0")
    v2, a2 = publish(harness, "2.0.0", healthy=False)
    fetch = fetcher({"1.0.0": a1, "2.0.0": a2})
    manager = harness.manager()
    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.APPLIED}
    # 1.0.0 keeps running, but would crash if it were ever restarted.
    (harness.config.root / "webapp" / "state" / "www" / "crash").write_text("")

    assert manager.apply([v2], fetch) == {"webapp": RoleOutcome.FAILED}
    assert harness.kinds()[1:] == ["role-failed", "role-failed"]
    assert [e.message for e in harness.events[1:]] == ["health gate failed", "rollback failed"]
    assert manager.installed_version("webapp") == Version("1.0.0")

    # 2.0.0 is bad now; the next poll finds 1.0.0 down, fails to restart it: safe mode.
    assert manager.apply([v2], fetch) == {"webapp": RoleOutcome.FAILED}
    assert harness.kinds()[-1] == "safe-mode-entered"
    assert "webapp 1.0.0 failed 2 times in a row" in harness.events[-1].message


def test_crash_loop_enters_safe_mode_and_a_healthy_version_leaves_it(harness):
    v1, a1 = publish(harness, "1.0.0")
    v2, a2 = publish(harness, "1.0.1")
    fetch = fetcher({"1.0.0": a1, "1.0.1": a2})
    manager = harness.manager()
    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.APPLIED}

    # The running role starts crashing: every restart exits at once.
    www = harness.config.root / "webapp" / "state" / "www"
    (www / "crash").write_text("")
    harness.crash()
    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.FAILED}
    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.FAILED}
    assert harness.kinds()[-1] == "safe-mode-entered"

    statuses = {s.name: s for s in manager.status()}
    assert statuses["webapp"].safe_mode and statuses["webapp"].health is Health.UNHEALTHY
    assert statuses["safe-mode"].health is Health.HEALTHY
    port = next(p.port for p in _safe_mode_ports(harness))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as reply:
        served = json.load(reply)
    assert served["device_id"] == "test-device" and served["safe_mode"] is True
    assert "crash-looping" in served["last_errors"][0]["error"]
    # The tripping version is not retried while in safe mode.
    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.SKIPPED}

    (www / "crash").unlink()
    assert manager.apply([v2], fetch) == {"webapp": RoleOutcome.APPLIED}
    assert harness.kinds()[-2:] == ["role-applied", "safe-mode-left"]
    assert {s.name for s in manager.status()} == {"webapp"}


def _safe_mode_ports(harness):
    return load_bundle(harness.config.safe_mode_bundle).spec.ports


class PowerCut(Exception):
    pass


@pytest.mark.parametrize(
    ("step", "runs_after_reboot"),
    # Every step is cut in test_layout.py; here the two sides of the decisive rename.
    [("current-temp", "1.0.0"), ("current-linked", "2.0.0")],
)
def test_power_cut_during_the_swap_leaves_a_runnable_role(harness, step, runs_after_reboot):
    v1, a1 = publish(harness, "1.0.0")
    v2, a2 = publish(harness, "2.0.0")
    fetch = fetcher({"1.0.0": a1, "2.0.0": a2})
    assert harness.manager().apply([v1], fetch) == {"webapp": RoleOutcome.APPLIED}

    def cut(name: str) -> None:
        if name == step:
            raise PowerCut(name)

    with pytest.raises(PowerCut):
        harness.manager(checkpoint=cut).apply([v2], fetch)
    harness.cleanup()  # the power cut took every container with it

    rebooted = harness.manager()
    rebooted.resume()
    [status] = rebooted.status()
    assert (status.version, status.health) == (Version(runs_after_reboot), Health.HEALTHY)
    assert f"webapp {runs_after_reboot}" in page(harness, runs_after_reboot)

    rebooted.apply([v2], fetch)
    [status] = rebooted.status()
    assert (status.version, status.health) == (Version("2.0.0"), Health.HEALTHY)


def test_power_cut_after_the_swap_back_still_reports_the_rollback(harness):
    """Cut once ``current`` points back at 1.0.0 but before 1.0.0 passed its gate: the next
    start runs 1.0.0 and reports the rollback it finished (the QEMU tier found it lost)."""
    v1, a1 = publish(harness, "1.0.0")
    v2, a2 = publish(harness, "2.0.0", healthy=False)
    fetch = fetcher({"1.0.0": a1, "2.0.0": a2})
    assert harness.manager().apply([v1], fetch) == {"webapp": RoleOutcome.APPLIED}

    def cut(name: str) -> None:
        if name == "rolled-back":
            raise PowerCut(name)

    with pytest.raises(PowerCut):
        harness.manager(checkpoint=cut).apply([v2], fetch)
    assert harness.kinds() == ["role-applied", "role-failed"]
    harness.cleanup()  # the power cut took every container with it

    rebooted = harness.manager()
    assert rebooted.apply([v2], fetch) == {"webapp": RoleOutcome.ROLLED_BACK}
    assert harness.kinds() == ["role-applied", "role-failed", "role-rollback"]
    rollback = harness.events[-1]
    assert (rollback.version, rollback.message) == (
        Version("1.0.0"),
        "webapp rolled back from 2.0.0 to 1.0.0",
    )
    assert "unhealthy" in (rollback.reason or "")
    [status] = rebooted.status()
    assert (status.version, status.health) == (Version("1.0.0"), Health.HEALTHY)
    assert rebooted.apply([v2], fetch) == {"webapp": RoleOutcome.UNCHANGED}
    assert len(harness.events) == 3


def test_images_must_be_present_or_pullable(harness):
    ensure_images(load_bundle(make_bundle(harness.tmp / "present", image=harness.image)))
    missing = make_bundle(harness.tmp / "missing", image="sha256:" + "e" * 64)
    with pytest.raises(EngineError, match="not loaded on this device and the bundle carries no"):
        ensure_images(load_bundle(missing))


def test_the_overlord_ends_only_the_safe_mode_it_asked_for(harness):
    v1, a1 = publish(harness, "1.0.0")
    manager = harness.manager()
    assert manager.apply([v1], fetcher({"1.0.0": a1})) == {"webapp": RoleOutcome.APPLIED}

    manager.follow_desired_safe_mode(True)
    statuses = {s.name: s for s in manager.status()}
    assert statuses["safe-mode"].health is Health.HEALTHY
    assert statuses["webapp"].health is Health.UNHEALTHY
    manager.follow_desired_safe_mode(True)  # every poll repeats the request: no change
    assert harness.kinds().count("safe-mode-entered") == 1

    manager.follow_desired_safe_mode(False)
    assert [s.health for s in manager.status()] == [Health.HEALTHY]
    assert harness.kinds()[-2:] == ["safe-mode-left", "role-applied"]

    manager.enter_safe_mode("bench maintenance")
    manager.follow_desired_safe_mode(False)
    assert {s.name for s in manager.status()} == {"webapp", "safe-mode"}


# Anti-rollback does not depend on the compose flavour: these run on v2 (what devices run).
v2_only = pytest.mark.parametrize("harness", [ComposeFlavor.V2], indirect=True, ids=["compose-v2"])


@v2_only
def test_anti_rollback_covers_staged_versions_and_rollbacks(harness):
    v1, a1 = publish(harness, "1.0.0")
    v2, a2 = publish(harness, "2.0.0")
    v3, a3 = publish(harness, "3.0.0", healthy=False)
    # 3.0.0's signed metadata declares the floor 3.0.0 (say, 2.0.0 has a security hole).
    fetch = fetcher({"1.0.0": a1, "2.0.0": a2, "3.0.0": a3}, floors={"3.0.0": "3.0.0"})
    manager = harness.manager()
    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.APPLIED}
    assert manager.apply([v2], fetch) == {"webapp": RoleOutcome.APPLIED}

    # 1.0.0 is still staged as `previous`, so it needs no fetch, but it is a downgrade.
    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.FAILED}
    assert harness.events[-1].message == "bundle rejected"
    assert "lower than 2.0.0, which already passed its health gate" in (
        harness.events[-1].reason or ""
    )
    [status] = manager.status()
    assert (status.version, status.health) == (Version("2.0.0"), Health.HEALTHY)

    # 3.0.0 fails its gate; rolling back to 2.0.0 would run a version below the floor.
    assert manager.apply([v3], fetch) == {"webapp": RoleOutcome.FAILED}
    failed, refused = harness.events[-2:]
    assert (failed.message, refused.message) == ("health gate failed", "rollback refused")
    assert refused.version == Version("2.0.0")
    assert "below this device's version floor 3.0.0" in (refused.reason or "")
    assert "role-rollback" not in harness.kinds()
    [status] = manager.status()
    assert status.version == Version("3.0.0") and status.health is not Health.HEALTHY


@v2_only
def test_leaving_safe_mode_does_not_restart_a_version_below_a_newer_floor(harness):
    v1, a1 = publish(harness, "1.0.0")
    wrong = DesiredRole(
        name="webapp", version=Version("1.1.0"), target=role_target("webapp", "1.1.0")
    )
    # 1.1.0's signed metadata raises the floor, but its archive holds another version.
    fetch = fetcher({"1.0.0": a1, "1.1.0": a1}, floors={"1.1.0": "1.1.0"})
    manager = harness.manager()
    assert manager.apply([v1], fetch) == {"webapp": RoleOutcome.APPLIED}
    assert manager.apply([wrong], fetch) == {"webapp": RoleOutcome.FAILED}
    assert harness.events[-1].message == "bundle rejected"
    # The running 1.0.0 is not stopped for it, but it is never started again.
    assert manager.status()[0].health is Health.HEALTHY

    manager.enter_safe_mode("bench maintenance")
    manager.leave_safe_mode()
    assert harness.kinds()[-2:] == ["safe-mode-left", "role-failed"]
    assert harness.events[-1].message == "restart failed"
    assert "below this device's version floor 1.1.0" in (harness.events[-1].reason or "")
    [status] = manager.status()
    assert (status.version, status.health) == (Version("1.0.0"), Health.UNHEALTHY)


def test_a_role_restarts_with_new_configuration_only_when_a_value_it_uses_changes(harness):
    """The Overlord's variables (``vars``) in a real container: a value the template does not
    read leaves the container alone; one it reads recreates it with the new environment."""
    source = make_bundle(harness.tmp / "src-vars", image=harness.image)
    (source / ".env.template").write_text("GREETING={{ vars.GREETING }}\n")
    archive = harness.tmp / "webapp-vars.tar.zst"
    pack(source, archive)
    desired = DesiredRole(name="webapp", version=Version("1.0.0"), target="roles/webapp/1.0.0")
    fetch = fetcher({"1.0.0": archive})
    manager = harness.manager()
    assert manager.apply([desired], fetch, variables={"GREETING": "moin"}) == {
        "webapp": RoleOutcome.APPLIED
    }
    assert "moin from webapp 1.0.0" in page(harness, "1.0.0")
    first = harness.containers()
    unused = {"GREETING": "moin", "UNUSED": "x"}
    assert manager.apply([desired], fetch, variables=unused) == {"webapp": RoleOutcome.UNCHANGED}
    assert harness.containers() == first
    assert manager.apply([desired], fetch, variables={"GREETING": "servus"}) == {
        "webapp": RoleOutcome.APPLIED
    }
    assert "servus from webapp 1.0.0" in page(harness, "1.0.0")
    assert harness.containers() != first
    assert harness.events[-1].message == "restarted with the new configuration"
    assert harness.events[-1].reason == "GREETING changed"
