"""The device's view: each known-bad fixture ends in one clear error, trusted state intact."""

from __future__ import annotations

import hashlib

import pytest
import zstandard

from fleetcore.release import Hardware
from fleetcore.version import Version
from signing.client import ReleaseClient
from signing.errors import MetadataError, TargetMismatch, TargetNotFound
from signing.targets import TargetKind
from tests.signing.conftest import REPOS

ROLE = "roles/camera/1.0.0.tar.zst"
OS = "os/1.0.0/manifest.json"


def snapshot_dir(path):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*.json"))
    }


def make_client(tmp_path, repo_server, trusted_root):
    return ReleaseClient(
        metadata_dir=tmp_path / "trusted", base_url=repo_server.url, bootstrap_root=trusted_root
    )


def test_good_repository_downloads_verified_target(tmp_path, repo_server, trusted_root):
    client = make_client(tmp_path, repo_server, trusted_root)
    client.refresh()
    target = client.get_target(ROLE)
    assert target.custom is not None
    assert target.custom.kind is TargetKind.ROLE
    assert target.custom.version == Version("1.0.0")
    assert target.custom.hardware == (Hardware.PI4, Hardware.PI5)
    out = client.download(target, tmp_path / "bundle.tar.zst")
    plain = zstandard.ZstdDecompressor().stream_reader(out.read_bytes()).read()
    assert hashlib.sha256(plain).hexdigest() == target.custom.uncompressed_sha256
    assert len(plain) == target.custom.uncompressed_size
    assert client.read(client.get_target(OS)) == b'{"fixture": "os 1.0.0"}\n'


def test_unknown_target(tmp_path, repo_server, trusted_root):
    client = make_client(tmp_path, repo_server, trusted_root)
    client.refresh()
    with pytest.raises(TargetNotFound, match="no signed target named 'os/9.9.9/manifest.json'"):
        client.get_target("os/9.9.9/manifest.json")


def test_tampered_target_is_rejected_and_not_written(tmp_path, repo_server, trusted_root):
    repo_server.serve(REPOS / "tampered-target")
    client = make_client(tmp_path, repo_server, trusted_root)
    client.refresh()
    target = client.get_target(ROLE)
    dest = tmp_path / "bundle.tar.zst"
    with pytest.raises(TargetMismatch, match="does not match its signed sha256"):
        client.download(target, dest)
    assert not dest.exists()
    assert list(tmp_path.glob(".bundle*")) == []


def test_endless_data_is_cut_at_signed_length(tmp_path, repo_server, trusted_root):
    client = make_client(tmp_path, repo_server, trusted_root)
    client.refresh()
    target = client.get_target(ROLE)
    repo_server.endless("/repo/targets/")
    with pytest.raises(TargetMismatch, match="endless data"):
        client.download(target, tmp_path / "bundle.tar.zst")
    assert not (tmp_path / "bundle.tar.zst").exists()


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("wrong-key", "signatures do not meet the threshold"),
        ("expired-timestamp", "expired"),
        ("below-threshold", "signatures do not meet the threshold"),
        ("duplicate-key-timestamp", "duplicate key 'meta'"),
    ],
)
def test_bad_metadata_keeps_trusted_state(tmp_path, repo_server, trusted_root, fixture, message):
    client = make_client(tmp_path, repo_server, trusted_root)
    client.refresh()
    trusted = snapshot_dir(tmp_path / "trusted")
    repo_server.serve(REPOS / fixture)
    attacked = make_client(tmp_path, repo_server, trusted_root)
    with pytest.raises(MetadataError, match=message):
        attacked.refresh()
        attacked.get_target(ROLE)
    assert snapshot_dir(tmp_path / "trusted") == trusted


@pytest.mark.parametrize(
    ("fixture", "key"),
    [("duplicate-key-timestamp", "meta"), ("duplicate-key-targets", "targets")],
)
def test_signed_metadata_naming_a_key_twice_is_refused(
    tmp_path, repo_server, trusted_root, fixture, key
):
    """python-tuf's json.loads keeps the last of two equal keys, and the signature covers
    that reading; a reader keeping the first sees other metadata. Refused before python-tuf
    parses it, as one MetadataError, and nothing of it is trusted."""
    repo_server.serve(REPOS / fixture)
    client = make_client(tmp_path, repo_server, trusted_root)
    with pytest.raises(MetadataError, match=f"not strict JSON: .*duplicate key '{key}'"):
        client.refresh()
        client.get_target(ROLE)
    assert not (tmp_path / "trusted" / "targets.json").exists()


def test_mix_and_match_targets_is_refused(tmp_path, repo_server, trusted_root):
    """snapshot says targets v3, the server hands out an older, validly signed targets."""
    repo_server.serve(REPOS / "mix-and-match")
    client = make_client(tmp_path, repo_server, trusted_root)
    with pytest.raises(MetadataError, match="version"):
        client.refresh()
    assert not (tmp_path / "trusted" / "targets.json").exists()


def test_metadata_rollback_is_refused(tmp_path, repo_server, trusted_root):
    client = make_client(tmp_path, repo_server, trusted_root)
    client.refresh()
    trusted = snapshot_dir(tmp_path / "trusted")
    repo_server.serve(REPOS / "rollback")
    replayed = make_client(tmp_path, repo_server, trusted_root)
    with pytest.raises(MetadataError, match="rollback attack"):
        replayed.refresh()
    assert snapshot_dir(tmp_path / "trusted") == trusted


def test_root_rotation_chain_is_followed(tmp_path, repo_server, trusted_root):
    repo_server.serve(REPOS / "rotated")
    client = make_client(tmp_path, repo_server, trusted_root)
    client.refresh()
    assert client.get_target("os/2.0.0/manifest.json").custom.version == Version("2.0.0")
    root = (tmp_path / "trusted" / "root.json").read_text()
    assert '"version": 3' in root


def test_needs_a_trusted_root(tmp_path, repo_server):
    with pytest.raises(MetadataError, match="no trusted root"):
        ReleaseClient(metadata_dir=tmp_path / "empty", base_url=repo_server.url)


def test_unreachable_repository(tmp_path, trusted_root):
    from signing.errors import DownloadError

    client = ReleaseClient(
        metadata_dir=tmp_path / "trusted",
        base_url="http://127.0.0.1:9",
        bootstrap_root=trusted_root,
    )
    with pytest.raises(DownloadError, match="unreachable") as info:
        client.refresh()
    # A network failure is its own branch: no except clause for verification failures
    # (which fail an install) can catch it, whatever the order.
    from signing.errors import VerificationError

    assert not isinstance(info.value, VerificationError)
