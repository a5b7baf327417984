"""fleet-sign add-release publishes a release's delta lists as targets and copies each diff
only after it decoded against its base chunks to its target chunk's hash."""

from __future__ import annotations

import json

import pytest

from fleetcore.delta import delta_path, deltas_target, load_deltas
from fleetcore.release import ImageName
from signing.errors import RepositoryError
from signing.repository import publish_release
from tests.updater.releases import ReleaseRepo, build_release, image_bytes, patched

V1 = {ImageName.BOOT: image_bytes(1, 300_000), ImageName.SYSTEM: image_bytes(2, 1_000_000)}


def changed(n: int) -> dict[ImageName, bytes]:
    system = V1[ImageName.SYSTEM]
    for k in range(4):
        system = patched(system, 100_000 + k * 200_000, image_bytes(10 * n + k, 32))
    return {ImageName.BOOT: V1[ImageName.BOOT], ImageName.SYSTEM: system}


@pytest.fixture
def repo(tmp_path) -> ReleaseRepo:
    repo = ReleaseRepo(tmp_path / "r")
    repo.publish("1.0.0", V1)
    return repo


def test_delta_lists_become_targets_and_diffs_are_copied(repo):
    release = repo.publish("2.0.0", changed(2), delta_from=repo.base / "build" / "release-1.0.0")
    deltas = load_deltas((release / "delta-lists" / "1.0.0.json").read_bytes())
    assert len(deltas.deltas) >= 4
    targets = json.loads((repo.path / "metadata" / "targets.json").read_bytes())
    assert deltas_target("2.0.0", "1.0.0") in targets["signed"]["targets"]
    for delta in deltas.deltas:
        path = repo.path / delta_path(delta.target, delta.bases)
        assert path.stat().st_size == delta.delta_size


@pytest.mark.parametrize("damage", ["other-bytes", "missing", "resized"])
def test_a_broken_diff_is_refused_before_anything_is_signed(repo, damage):
    build = repo.base / "build"
    release = build_release(build, "2.0.0", changed(2), delta_from=build / "release-1.0.0")
    delta = load_deltas((release / "delta-lists" / "1.0.0.json").read_bytes()).deltas[0]
    diff = release / delta_path(delta.target, delta.bases)
    if damage == "other-bytes":  # a valid diff of another chunk, renamed
        other = load_deltas((release / "delta-lists" / "1.0.0.json").read_bytes()).deltas[1]
        diff.write_bytes((release / delta_path(other.target, other.bases)).read_bytes())
    elif damage == "missing":
        diff.unlink()
    else:
        diff.write_bytes(diff.read_bytes() + b"\0")
    before = (repo.path / "metadata" / "targets.json").read_bytes()
    with pytest.raises(RepositoryError) as err:
        publish_release(repo.path, repo.keys, release)
    assert "\n" not in str(err.value)
    assert (repo.path / "metadata" / "targets.json").read_bytes() == before
    assert not (repo.path / delta_path(delta.target, delta.bases)).exists()
