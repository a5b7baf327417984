import hashlib
import json

import pytest
import zstandard
from tuf.api.metadata import Metadata

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
from signing.client import ReleaseClient
from signing.errors import RepositoryError
from signing.keys import KeyStore
from signing.repository import (
    accept_signed_targets,
    add_targets,
    init_repository,
    publish_release,
    refresh_timestamp,
    rotate_keys,
)
from signing.targets import TargetCustom, TargetKind, TargetSpec


@pytest.fixture
def keys(tmp_path):
    return KeyStore.generate(tmp_path / "keys", root_keys=3)


@pytest.fixture
def repo(tmp_path, keys):
    path = tmp_path / "repo"
    init_repository(path, keys, root_threshold=2)
    return path


def version_of(repo, role):
    return json.loads((repo / "metadata" / f"{role}.json").read_text())["signed"]["version"]


def custom(version="1.0.0", kind=TargetKind.ROLE):
    return TargetCustom(
        kind=kind,
        version=Version(version),
        hardware=(Hardware.PI4,),
        uncompressed_size=1,
        uncompressed_sha256="0" * 64,
    )


def test_init_layout(repo):
    names = sorted(p.name for p in (repo / "metadata").iterdir())
    assert names == [
        "1.root.json",
        "1.snapshot.json",
        "1.targets.json",
        "root.json",
        "snapshot.json",
        "targets.json",
        "timestamp.json",
    ]
    root = json.loads((repo / "metadata" / "root.json").read_text())["signed"]
    assert root["consistent_snapshot"] is True
    assert root["roles"]["root"]["threshold"] == 2
    assert len(root["roles"]["root"]["keyids"]) == 3
    assert (repo / "targets").is_dir()


def test_init_refuses_existing_and_bad_threshold(tmp_path, repo, keys):
    with pytest.raises(RepositoryError, match="already holds"):
        init_repository(repo, keys)
    with pytest.raises(RepositoryError, match="threshold 4"):
        init_repository(tmp_path / "other", keys, root_threshold=4)


def test_add_writes_hash_prefixed_target_and_bumps_versions(tmp_path, repo, keys):
    payload = tmp_path / "bundle.tar.zst"
    payload.write_bytes(b"bundle")
    add_targets(repo, keys, [TargetSpec(payload, "roles/cam/1.0.0.tar.zst", custom())])
    digest = hashlib.sha256(b"bundle").hexdigest()
    assert (
        repo / "targets" / "roles" / "cam" / f"{digest}.1.0.0.tar.zst"
    ).read_bytes() == b"bundle"
    assert (version_of(repo, "targets"), version_of(repo, "snapshot")) == (2, 2)
    assert version_of(repo, "timestamp") == 2
    assert (repo / "metadata" / "2.targets.json").exists()


@pytest.mark.parametrize(
    "name", ["../escape", "/abs", "a//b", "a/./b", "", "sp ace", "os/1/m.json\n"]
)
def test_add_rejects_bad_names(tmp_path, repo, keys, name):
    payload = tmp_path / "f"
    payload.write_bytes(b"x")
    with pytest.raises(RepositoryError, match="invalid target name"):
        add_targets(repo, keys, [TargetSpec(payload, name)])
    assert version_of(repo, "targets") == 1


def test_add_missing_file_changes_nothing(tmp_path, repo, keys):
    with pytest.raises(RepositoryError, match="cannot read target file"):
        add_targets(repo, keys, [TargetSpec(tmp_path / "nope", "roles/x/1.tar.zst")])
    assert version_of(repo, "targets") == 1


def test_refresh_timestamp_needs_only_online_keys(tmp_path, repo, keys):
    (tmp_path / "overlord").mkdir()
    (tmp_path / "keys" / "online").rename(tmp_path / "overlord" / "online")
    refresh_timestamp(repo, KeyStore.open(tmp_path / "overlord"))
    assert (version_of(repo, "snapshot"), version_of(repo, "timestamp")) == (2, 2)


def test_rotation_of_every_role_is_followed_by_a_client(tmp_path, repo, keys, serve):
    trusted_root = (repo / "metadata" / "1.root.json").read_bytes()
    for role in ("timestamp", "snapshot", "targets", "root"):
        rotate_keys(repo, keys, role)
    assert version_of(repo, "root") == 5
    assert len(list((tmp_path / "keys" / "retired").iterdir())) == 6
    payload = tmp_path / "after.bin"
    payload.write_bytes(b"after rotation")
    add_targets(repo, KeyStore.open(tmp_path / "keys"), [TargetSpec(payload, "os/2.0.0/m.json")])
    client = ReleaseClient(
        metadata_dir=tmp_path / "dev", base_url=serve(repo), bootstrap_root=trusted_root
    )
    client.refresh()
    assert client.read(client.get_target("os/2.0.0/m.json")) == b"after rotation"


def test_root_rotation_is_signed_by_old_and_new_thresholds(repo, keys):
    old = {s.public_key.keyid for s in keys.get("root")}
    rotate_keys(repo, keys, "root")
    new = {s.public_key.keyid for s in keys.get("root")}
    md = Metadata.from_file(str(repo / "metadata" / "2.root.json"))
    assert old <= set(md.signatures) and new <= set(md.signatures)
    assert set(md.signed.roles["root"].keyids) == new


def test_rotate_unknown_role(repo, keys):
    with pytest.raises(RepositoryError, match="unknown role 'mirror'"):
        rotate_keys(repo, keys, "mirror")


def _ci_signed_targets(tmp_path, repo, keys, payload_bytes, name="roles/cam/2.0.0.tar.zst"):
    """What CI does: add the target on its own copy of the repository, offline."""
    import shutil

    ci_copy = tmp_path / "ci-copy"
    shutil.rmtree(ci_copy, ignore_errors=True)
    shutil.copytree(repo, ci_copy)
    payload = tmp_path / "upload.tar.zst"
    payload.write_bytes(payload_bytes)
    add_targets(ci_copy, keys, [TargetSpec(payload, name, custom("2.0.0"))])
    return (ci_copy / "metadata" / "targets.json").read_bytes(), {name: payload}


def _online_only(tmp_path):
    import shutil

    shutil.copytree(tmp_path / "keys" / "online", tmp_path / "overlord" / "online")
    return KeyStore.open(tmp_path / "overlord")


def test_accept_signed_targets_from_ci(tmp_path, repo, keys, serve):
    signed, uploads = _ci_signed_targets(tmp_path, repo, keys, b"v2 bundle")
    accept_signed_targets(repo, _online_only(tmp_path), signed, uploads)
    assert version_of(repo, "targets") == 2
    client = ReleaseClient(
        metadata_dir=tmp_path / "dev",
        base_url=serve(repo),
        bootstrap_root=(repo / "metadata" / "1.root.json").read_bytes(),
    )
    client.refresh()
    assert client.read(client.get_target("roles/cam/2.0.0.tar.zst")) == b"v2 bundle"


def test_accept_rejects_tampered_upload(tmp_path, repo, keys):
    signed, uploads = _ci_signed_targets(tmp_path, repo, keys, b"v2 bundle")
    uploads["roles/cam/2.0.0.tar.zst"].write_bytes(b"evil bundle")
    with pytest.raises(RepositoryError, match="does not match its signed hashes"):
        accept_signed_targets(repo, _online_only(tmp_path), signed, uploads)
    assert version_of(repo, "targets") == 1
    assert not list((repo / "targets").rglob("*.tar.zst"))


def test_accept_rejects_wrong_signer_and_replay(tmp_path, repo, keys):
    signed, uploads = _ci_signed_targets(tmp_path, repo, keys, b"v2 bundle")
    md = Metadata.from_bytes(signed)
    md.signatures.clear()
    md.sign(keys.get("snapshot")[0])
    online = _online_only(tmp_path)
    with pytest.raises(RepositoryError, match="not signed by the targets key"):
        accept_signed_targets(repo, online, md.to_bytes(), uploads)
    accept_signed_targets(repo, online, signed, uploads)
    with pytest.raises(RepositoryError, match="does not move past 2"):
        accept_signed_targets(repo, online, signed, uploads)


def _release(tmp_path, data=b"system image " * 1000, boot=b"boot files " * 300):
    release = tmp_path / "release"
    version = Version("3.1.0")
    images = {}
    compressor = zstandard.ZstdCompressor()
    for name, blob in ((ImageName.BOOT, boot), (ImageName.SYSTEM, data)):
        parts = [blob[i : i + 4096] for i in range(0, len(blob), 4096)]
        chunks = []
        for part in parts:
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
        version=version,
        hardware=(Hardware.PI4, Hardware.PI5),
        system_format=SystemFormat.EROFS,
        created=0,
        images=images,
    )
    (release / "manifest.json").write_bytes(dump_manifest(manifest))
    return release, manifest


def test_publish_release(tmp_path, repo, keys, serve):
    release, manifest = _release(tmp_path)
    publish_release(repo, keys, release)
    client = ReleaseClient(
        metadata_dir=tmp_path / "dev",
        base_url=serve(repo),
        bootstrap_root=(repo / "metadata" / "1.root.json").read_bytes(),
    )
    client.refresh()
    target = client.get_target("os/3.1.0/manifest.json")
    assert target.custom is not None
    assert target.custom.kind is TargetKind.OS
    assert target.custom.uncompressed_sha256 == manifest.images[ImageName.SYSTEM].sha256
    assert client.get_target("os/3.1.0/system.index.json").length > 0
    for chunk in (release / "chunks").rglob("*.zst"):
        assert (repo / chunk.relative_to(release)).read_bytes() == chunk.read_bytes()


def test_publish_release_refuses_corrupt_chunk(tmp_path, repo, keys):
    release, _ = _release(tmp_path)
    victim = next((release / "chunks").rglob("*.zst"))
    victim.write_bytes(zstandard.ZstdCompressor().compress(b"not the chunk"))
    with pytest.raises(
        RepositoryError, match=r"does not match its hash|declares \d+ bytes, \d+ expected"
    ):
        publish_release(repo, keys, release)
    assert version_of(repo, "targets") == 1


def test_publish_release_refuses_missing_manifest(tmp_path, repo, keys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepositoryError, match="no readable manifest.json"):
        publish_release(repo, keys, tmp_path / "empty")
