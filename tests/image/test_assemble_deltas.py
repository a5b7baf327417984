"""fleet-image assemble --delta-from: the next release carries deltas from the previous one,
fleet-sign add-release publishes them, and a folder that is no release fails before the build."""

from __future__ import annotations

import shutil
from pathlib import Path

from fleetcore.delta import delta_path, deltas_target, load_deltas
from fleetcore.version import Version
from image import assemble
from signing.keys import KeyStore
from signing.repository import init_repository, publish_release
from tests.image.conftest import Built, request
from tests.image.test_assemble import _fails_cleanly


def test_next_release_carries_deltas_and_publishes(built: Built, tmp_path: Path):
    rootfs = tmp_path / "rootfs"
    shutil.copytree(built.rootfs, rootfs, symlinks=True)
    tool = rootfs / "usr/bin/tool7"
    tool.write_text(tool.read_text().replace("gamma", "GAMMA", 50))  # an updated binary
    out = tmp_path / "out"
    assemble.assemble(request(rootfs, out, version=Version("2.0.0"), delta_from=(built.release,)))
    deltas = load_deltas((out / "release/delta-lists/1.2.0.json").read_bytes())
    assert deltas.to_version == Version("2.0.0") and deltas.deltas
    for d in deltas.deltas:
        assert (out / "release" / delta_path(d.target, d.bases)).stat().st_size == d.delta_size

    keys = KeyStore.generate(tmp_path / "keys")
    repo = tmp_path / "repo"
    init_repository(repo, keys)
    publish_release(repo, keys, built.release)
    publish_release(repo, keys, out / "release")
    name = deltas_target("2.0.0", "1.2.0")
    assert list((repo / "targets/os/2.0.0/deltas").glob(f"*.{name.rpartition('/')[2]}"))


def test_delta_from_a_folder_that_is_no_release_fails_before_the_build(
    built: Built, tmp_path: Path, capsys
):
    out = tmp_path / "out"
    argv = [
        "assemble", "--rootfs", str(built.rootfs), "--out", str(out), "--version", "2.0.0",
        "--delta-from", str(tmp_path),
    ]  # fmt: skip
    _fails_cleanly(capsys, argv, out, "is not a release folder")
