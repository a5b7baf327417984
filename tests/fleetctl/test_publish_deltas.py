"""``releases publish`` carries a release's chunk diffs; the Overlord checks each against its
chunk before storing it, and garbage collection drops the diffs of dropped releases."""

from __future__ import annotations

import httpx
import pytest

from fleetcore.delta import DeltaList, delta_path, load_deltas
from tests.fleetctl.conftest import Fleet, one_line_error
from tests.fleetctl.test_publish import _offline_copy, _sign
from tests.signing.test_publish_deltas import V1, changed
from tests.updater.releases import build_release


def _diffs(deltas: DeltaList) -> list[str]:
    return [delta_path(d.target, d.bases) for d in deltas.deltas]


@pytest.fixture
def offline(fleet: Fleet, tmp_path):
    """The signing machine with 2.0.0 published, and 2.1.0 (diffed from 2.0.0) signed."""
    repo, keys = _offline_copy(fleet, tmp_path / "offline")
    build = tmp_path / "build"
    first = build_release(build, "2.0.0", V1)
    _sign("add-release", str(repo), str(first), "--keys", str(keys))
    assert fleet.run("releases", "publish", str(repo)).returncode == 0
    second = build_release(build, "2.1.0", changed(1), delta_from=first)
    _sign("add-release", str(repo), str(second), "--keys", str(keys))
    deltas = load_deltas((second / "delta-lists" / "2.0.0.json").read_bytes())
    assert len(deltas.deltas) >= 4
    return repo, keys, build, deltas


def test_publish_uploads_the_diffs_and_the_overlord_serves_them(fleet: Fleet, offline):
    repo, _keys, _build, deltas = offline
    dry = fleet.json("releases", "publish", str(repo), "--dry-run")
    assert dry[-1]["diffs"] == len(deltas.deltas)

    run = fleet.run("releases", "publish", str(repo))
    assert run.returncode == 0, run.stderr
    assert f"{len(deltas.deltas)} new diffs" in run.stdout
    for name in _diffs(deltas):
        assert (fleet.repo.path / name).read_bytes() == (repo / name).read_bytes()
    assert "nothing to publish" in fleet.ok("releases", "publish", str(repo))


@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing"])
def test_a_broken_diff_is_refused_and_nothing_is_served(fleet: Fleet, offline, damage):
    repo, _keys, _build, deltas = offline
    diff = repo / _diffs(deltas)[0]
    if damage == "flipped":
        data = bytearray(diff.read_bytes())
        data[len(data) // 2] ^= 0xFF
        diff.write_bytes(bytes(data))
    elif damage == "truncated":
        diff.write_bytes(diff.read_bytes()[:-1])
    else:
        diff.unlink()
    served_targets = (fleet.repo.path / "metadata" / "targets.json").read_bytes()

    result = fleet.run("releases", "publish", str(repo))

    if damage == "missing":
        assert "is missing from" in one_line_error(result)
    else:
        err = one_line_error(result, after_progress=True)
        assert "publish rejected" in err and _diffs(deltas)[0] in err
    assert (fleet.repo.path / "metadata" / "targets.json").read_bytes() == served_targets
    assert not (fleet.repo.path / _diffs(deltas)[0]).exists()


def test_gc_drops_the_diffs_of_dropped_releases_and_keeps_the_rest(fleet: Fleet, offline):
    repo, keys, build, old = offline
    third = build_release(build, "2.2.0", changed(2), delta_from=build / "release-2.1.0")
    _sign("add-release", str(repo), str(third), "--keys", str(keys))
    assert fleet.run("releases", "publish", str(repo)).returncode == 0
    new = load_deltas((third / "delta-lists" / "2.1.0.json").read_bytes())
    assert all((fleet.repo.path / name).exists() for name in _diffs(old) + _diffs(new))

    result = fleet.json("releases", "gc", "--keep", "1")

    assert {"os/2.0.0/manifest.json", "os/2.1.0/manifest.json"} <= set(result["dropped_releases"])
    assert not any((fleet.repo.path / name).exists() for name in _diffs(old))
    assert all((fleet.repo.path / name).exists() for name in _diffs(new))


def test_a_diff_no_delta_list_names_is_refused(fleet: Fleet, offline):
    repo, _keys, _build, deltas = offline
    stray = _diffs(deltas)[0]
    answer = httpx.post(
        f"{fleet.url}/api/v1/tuf/publish",
        files=[
            ("targets", ("targets.json", (repo / "metadata/targets.json").read_bytes(), "x")),
            (f"delta:{stray}", ("d", (repo / stray).read_bytes(), "application/zstd")),
        ],
        headers={"Authorization": f"Bearer {fleet.admin}"},
    )
    assert answer.status_code == 422, answer.text
    assert "named by no delta list" in answer.text
    assert not (fleet.repo.path / stray).exists()
