"""An assembled release is accepted by the signing side as it stands."""

from pathlib import Path

from fleetcore.release import ImageName, index_target, manifest_target
from image import release
from signing.keys import KeyStore
from signing.repository import init_repository, publish_release
from tests.image.conftest import VERSION, Built


def test_fleet_sign_publishes_an_assembled_release(built: Built, tmp_path: Path):
    keys = KeyStore.generate(tmp_path / "keys")
    repo = tmp_path / "repo"
    init_repository(repo, keys)
    manifest = publish_release(repo, keys, built.release)
    assert manifest == release.read_manifest(built.release)
    targets = (repo / "metadata/targets.json").read_text()
    for name in (manifest_target(VERSION), *(index_target(VERSION, i) for i in ImageName)):
        assert name in targets
    for chunk in (built.release / "chunks").rglob("*.zst"):
        assert (repo / chunk.relative_to(built.release)).is_file()
