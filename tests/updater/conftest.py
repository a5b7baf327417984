from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.release import ImageName
from tests.updater.device import SimDevice
from tests.updater.releases import ReleaseRepo, image_bytes, patched
from tests.updater.servers import FleetServer

BOOT_SIZE = 1 << 20
SYSTEM_SIZE = 6 << 20


def v1_images() -> dict[ImageName, bytes]:
    return {
        ImageName.BOOT: image_bytes(1, BOOT_SIZE),
        ImageName.SYSTEM: image_bytes(2, SYSTEM_SIZE),
    }


def v2_images() -> dict[ImageName, bytes]:
    """Version 2: the same images with one small "package" changed in each."""
    old = v1_images()
    return {
        ImageName.BOOT: patched(old[ImageName.BOOT], 300_000, b"kernel-2" * 512),
        ImageName.SYSTEM: patched(old[ImageName.SYSTEM], 2_500_000, image_bytes(3, 40_000)),
    }


@pytest.fixture(scope="session")
def repo_template(tmp_path_factory: pytest.TempPathFactory) -> ReleaseRepo:
    """A repository with 1.0.0 and 2.0.0; tests that change it copy it first."""
    repo = ReleaseRepo(tmp_path_factory.mktemp("repo"))
    repo.publish("1.0.0", v1_images())
    repo.publish("2.0.0", v2_images())
    return repo


@pytest.fixture
def repo(repo_template: ReleaseRepo) -> ReleaseRepo:
    return repo_template


@pytest.fixture
def server(repo: ReleaseRepo) -> Iterator[FleetServer]:
    fleet = FleetServer(repo.path)
    yield fleet
    fleet.close()


def v1_device(base: Path, repo: ReleaseRepo) -> SimDevice:
    """A freshly flashed device running 1.0.0 from slot a, trusting ``repo``'s root."""
    return SimDevice.create(
        base,
        images=v1_images(),
        version="1.0.0",
        root_json=repo.root_json,
        release_dir=repo.base / "build" / "release-1.0.0",
    )


@pytest.fixture
def device(tmp_path: Path, repo: ReleaseRepo) -> SimDevice:
    return v1_device(tmp_path / "device", repo)
