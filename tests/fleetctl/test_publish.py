"""``releases publish``: what fleet-sign wrote offline reaches the Overlord, new files only."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import zstandard

from fleetcore.release import (
    Chunk,
    Chunker,
    ChunkIndex,
    Hardware,
    ImageEntry,
    ImageName,
    Manifest,
    SystemFormat,
    chunk_path,
    dump_index,
    dump_manifest,
    index_target,
)
from fleetcore.version import Version
from signing.cli import main as fleet_sign
from tests.fleetctl.conftest import Fleet, one_line_error

BOOT = b"boot files shared by every release " * 300


def _offline_copy(fleet: Fleet, root: Path) -> tuple[Path, Path]:
    """The signing machine: a copy of the served repository and of the keys."""
    shutil.copytree(fleet.repo.path, root / "repo")
    shutil.copytree(fleet.repo.keydir, root / "keys")
    return root / "repo", root / "keys"


def _release(root: Path, version: str) -> Path:
    """A fleet-image release directory whose boot image is the same in every version."""
    release = root / f"release-{version}"
    compressor = zstandard.ZstdCompressor()
    images = {}
    for name, blob in ((ImageName.BOOT, BOOT), (ImageName.SYSTEM, f"{version} ".encode() * 3000)):
        chunks = []
        for start in range(0, len(blob), 4096):
            part = blob[start : start + 4096]
            digest = hashlib.sha256(part).hexdigest()
            path = release / chunk_path(digest)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(compressor.compress(part))
            chunks.append(Chunk(sha256=digest, size=len(part)))
        index = ChunkIndex(
            image=name,
            image_size=len(blob),
            image_sha256=hashlib.sha256(blob).hexdigest(),
            chunker=Chunker(min_size=1024, avg_size=4096, max_size=8192),
            chunks=tuple(chunks),
        )
        (release / f"{name.value}.index.json").write_bytes(dump_index(index))
        images[name] = ImageEntry(
            size=len(blob), sha256=index.image_sha256, index=index_target(version, name)
        )
    manifest = Manifest(
        version=Version(version),
        hardware=(Hardware.PI4,),
        system_format=SystemFormat.EROFS,
        created=0,
        images=images,
    )
    (release / "manifest.json").write_bytes(dump_manifest(manifest))
    return release


def _sign(*args: str) -> None:
    assert fleet_sign(list(args)) == 0


def _distinct_chunks(release: Path) -> int:
    return len({p.name for p in (release / "chunks").rglob("*.zst")})


def test_publish_uploads_releases_roles_and_only_new_chunks(fleet: Fleet, tmp_path: Path):
    repo, keys = _offline_copy(fleet, tmp_path / "offline")
    first = _release(tmp_path, "2.0.0")
    _sign("add-release", str(repo), str(first), "--keys", str(keys))
    dry = fleet.ok("releases", "publish", str(repo), "--dry-run")
    assert "os/2.0.0/manifest.json" in dry

    published = fleet.json("releases", "publish", str(repo))
    assert published[-1]["new_chunks"] == _distinct_chunks(first)
    assert "os/2.0.0/system.index.json" in published[-1]["targets"]

    second = _release(tmp_path, "2.1.0")
    bundle = tmp_path / "camera-3.0.0.tar.zst"
    bundle.write_bytes(zstandard.ZstdCompressor().compress(b"a role bundle"))
    _sign("add-release", str(repo), str(second), "--keys", str(keys))
    _sign(
        "add",
        str(repo),
        str(bundle),
        "--name",
        "roles/camera/3.0.0.tar.zst",
        "--kind",
        "role",
        "--version",
        "3.0.0",
        "--keys",
        str(keys),
    )
    run = fleet.run("releases", "publish", str(repo))
    assert run.returncode == 0, run.stderr
    assert "publish 1/1: 100%" in run.stderr, "the upload shows its progress"
    boot_chunks = len({c.sha256 for c in _boot_chunks()})
    assert f"{_distinct_chunks(second) - boot_chunks} new chunks" in run.stdout
    listed = {(r["kind"], r["name"], r["version"]) for r in fleet.json("releases", "list")}
    assert {("os", "os", "2.1.0"), ("role", "camera", "3.0.0")} <= listed

    again = fleet.ok("releases", "publish", str(repo))
    assert "nothing to publish" in again


def _boot_chunks() -> list[Chunk]:
    return [
        Chunk(sha256=hashlib.sha256(BOOT[i : i + 4096]).hexdigest(), size=len(BOOT[i : i + 4096]))
        for i in range(0, len(BOOT), 4096)
    ]


def test_publish_carries_a_root_rotation(fleet: Fleet, tmp_path: Path):
    repo, keys = _offline_copy(fleet, tmp_path / "offline")
    _sign("rotate", str(repo), "--role", "root", "--keys", str(keys))
    _sign("rotate", str(repo), "--role", "targets", "--keys", str(keys))
    steps = fleet.json("releases", "publish", str(repo))
    assert [s["root_version"] for s in steps] == [2, 3]
    served = (fleet.repo.path / "metadata" / "3.root.json").read_bytes()
    assert served == (repo / "metadata" / "3.root.json").read_bytes()


def test_publish_refusals_are_one_line(fleet: Fleet, tmp_path: Path):
    empty = tmp_path / "not-a-repo"
    empty.mkdir()
    assert "no metadata/targets.json" in one_line_error(
        fleet.run("releases", "publish", str(empty))
    )

    repo, keys = _offline_copy(fleet, tmp_path / "offline")
    release = _release(tmp_path, "2.0.0")
    _sign("add-release", str(repo), str(release), "--keys", str(keys))
    stray = next((repo / "chunks").rglob("*.zst"))
    stray.write_bytes(stray.read_bytes()[:-1] + b"\x00")
    rejected = fleet.run("releases", "publish", str(repo))
    err = one_line_error(rejected, after_progress=True)
    assert "publish rejected" in err and "not a valid zstd frame" in err
    assert "hint" not in err, "no hint invented for a refusal the server gave none for"
    stray.unlink()
    missing = fleet.run("releases", "publish", str(repo))
    assert "is missing from" in one_line_error(missing)


@pytest.mark.parametrize("name", ["../../../etc/passwd", "os/../../x", "/abs/path", "os//x"])
def test_publish_refuses_target_names_that_leave_the_repository(
    fleet: Fleet, tmp_path: Path, name: str
):
    repo, _keys = _offline_copy(fleet, tmp_path / "offline")
    path = repo / "metadata" / "targets.json"
    doc = json.loads(path.read_bytes())
    doc["signed"]["version"] += 1
    doc["signed"]["targets"][name] = {"length": 1, "hashes": {"sha256": "0" * 64}}
    path.write_text(json.dumps(doc))
    result = fleet.run("releases", "publish", str(repo))
    assert "lists an invalid target" in one_line_error(result)
