"""Bundles carrying their images, against the real Docker engine and both compose flavours.

``offline_image`` is a busybox image saved with ``docker save`` and then removed from the
engine, so the only way a role can run it is by loading the archive its bundle carries.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetcore.release import role_target
from fleetcore.version import Version
from fleetcore.wire import DesiredRole, Health
from updater.roles.archive import pack
from updater.roles.compose import ComposeFlavor
from updater.roles.manager import FetchedBundle, RoleOutcome

from .conftest import remove_image
from .helpers import image_archive, make_bundle, run_cli

pytestmark = pytest.mark.integration


def desired(version: str) -> DesiredRole:
    return DesiredRole(
        name="webapp", version=Version(version), target=role_target("webapp", version)
    )


def fetch_from(archives: dict[str, Path]):
    def fetch(role: DesiredRole) -> FetchedBundle:
        return FetchedBundle(archives[str(role.version)])

    return fetch


def in_engine(docker: str, image: str) -> bool:
    probe = subprocess.run([docker, "image", "inspect", image], capture_output=True)
    return probe.returncode == 0


def test_a_bundle_carrying_its_image_runs_without_it_in_the_engine(harness, offline_image, capsys):
    image_id, saved = offline_image
    image_hex = image_id.removeprefix("sha256:")
    source = make_bundle(harness.tmp / "src", image=image_id)
    archive = harness.tmp / "webapp-1.0.0.tar.zst"
    assert run_cli("pack", str(source), str(archive), "--images", str(saved)) == 0
    assert f"carries images/{image_hex}.tar" in capsys.readouterr().out

    manager = harness.manager()
    assert manager.apply([desired("1.0.0")], fetch_from({"1.0.0": archive})) == {
        "webapp": RoleOutcome.APPLIED
    }
    assert in_engine(harness.docker, image_id)
    [status] = manager.status()
    assert (status.version, status.health) == (Version("1.0.0"), Health.HEALTHY)
    # The archive stays with the staged version: a later rollback may need it again.
    staged = harness.config.root / "webapp" / "1.0.0" / "images" / f"{image_hex}.tar"
    assert staged.read_bytes() == (saved / f"{image_hex}.tar").read_bytes()


def test_a_rollback_loads_the_previous_image_again(harness, offline_image):
    image_id, saved = offline_image
    good = make_bundle(harness.tmp / "src-1", image=image_id, version="1.0.0")
    pack(good, harness.tmp / "1.tar.zst", images_dir=saved)
    bad = make_bundle(harness.tmp / "src-2", image=harness.image, version="2.0.0", healthy=False)
    pack(bad, harness.tmp / "2.tar.zst")
    fetch = fetch_from({"1.0.0": harness.tmp / "1.tar.zst", "2.0.0": harness.tmp / "2.tar.zst"})
    assert harness.manager().apply([desired("1.0.0")], fetch) == {"webapp": RoleOutcome.APPLIED}

    starts: list[str] = []

    def prune_before_the_rollback(step: str) -> None:
        # 1st start: 2.0.0, which replaced 1.0.0's container; 2nd: the rollback to 1.0.0.
        if step == "compose-up":
            starts.append(step)
            if len(starts) == 2:
                remove_image(harness.docker, image_id)

    manager = harness.manager(checkpoint=prune_before_the_rollback)
    assert manager.apply([desired("2.0.0")], fetch) == {"webapp": RoleOutcome.ROLLED_BACK}
    assert len(starts) == 2
    assert in_engine(harness.docker, image_id)
    [status] = manager.status()
    assert (status.version, status.health) == (Version("1.0.0"), Health.HEALTHY)
    assert harness.kinds() == ["role-applied", "role-failed", "role-rollback"]


# Loading does not depend on the compose flavour: these run on v2 (what devices run).
v2_only = pytest.mark.parametrize("harness", [ComposeFlavor.V2], indirect=True, ids=["compose-v2"])


@v2_only
def test_an_archive_docker_refuses_fails_the_update_and_keeps_the_running_version(harness):
    assert harness.manager().apply(
        [desired("1.0.0")], fetch_from({"1.0.0": _published(harness, harness.image, "1.0.0")})
    ) == {"webapp": RoleOutcome.APPLIED}
    # It passes validation (the config digest matches), but a layer is not the one the config
    # names, which only docker load can tell.
    image_hex = image_archive(harness.tmp / "broken", diff_ok=False)
    broken = _published(harness, f"sha256:{image_hex}", "1.1.0", images=harness.tmp / "broken")

    manager = harness.manager()
    assert manager.apply([desired("1.1.0")], fetch_from({"1.1.0": broken})) == {
        "webapp": RoleOutcome.FAILED
    }
    event = harness.events[-1]
    assert event.message == "cannot stage bundle"
    assert f"cannot load images/{image_hex}.tar" in (event.reason or "")
    assert "invalid diffID" in (event.reason or "")
    [status] = manager.status()
    assert (status.version, status.health) == (Version("1.0.0"), Health.HEALTHY)


@v2_only
def test_a_carried_image_leaves_the_engine_with_the_last_version_carrying_it(
    harness, offline_image
):
    image_id, saved = offline_image
    archives = {
        "1.0.0": _published(harness, image_id, "1.0.0", images=saved),
        "1.1.0": _published(harness, image_id, "1.1.0", images=saved),
        "2.0.0": _published(harness, harness.image, "2.0.0"),
        "3.0.0": _published(harness, harness.image, "3.0.0"),
    }
    manager = harness.manager()
    for version in archives:
        assert manager.apply([desired(version)], fetch_from(archives)) == {
            "webapp": RoleOutcome.APPLIED
        }
        # Kept while a staged version (current or previous) carries it: 1.1.0 until 3.0.0.
        assert in_engine(harness.docker, image_id) is (version != "3.0.0")
    assert sorted(p.name for p in (harness.config.root / "webapp").iterdir()) == [
        "2.0.0",
        "3.0.0",
        "current",
        "previous",
        "state",
    ]
    assert in_engine(harness.docker, harness.image)  # named, never carried: not the manager's

    # A role no longer assigned takes the images only it carried with it, too.
    archives["4.0.0"] = _published(harness, image_id, "4.0.0", images=saved)
    assert manager.apply([desired("4.0.0")], fetch_from(archives)) == {
        "webapp": RoleOutcome.APPLIED
    }
    assert in_engine(harness.docker, image_id)
    assert manager.apply([], fetch_from(archives)) == {}
    assert not in_engine(harness.docker, image_id)
    assert in_engine(harness.docker, harness.image)


def _published(harness, image: str, version: str, *, images: Path | None = None) -> Path:
    source = make_bundle(harness.tmp / f"src-{version}", image=image, version=version)
    archive = harness.tmp / f"webapp-{version}.tar.zst"
    pack(source, archive, images_dir=images)
    return archive
