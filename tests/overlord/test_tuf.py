"""The release repository: served to a stock TUF client, published through the upload API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.testclient import TestClient
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from fleetcore.release import ImageName, index_target, manifest_target
from overlord import leases
from overlord.auth.models import KeyRole
from overlord.db import unit_of_work
from overlord.tuf import service as tuf_service
from signing.keys import KeyStore, signer_from_key
from signing.repository import rotate_keys
from tests.overlord.conftest import Overlord
from tests.overlord.tufrepo import chunk_file, multipart, offline_release


class ClientFetcher(FetcherInterface):
    """python-tuf's fetcher interface over the in-process test client."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def _fetch(self, url: str) -> Iterator[bytes]:
        resp = self.client.get(url)
        if resp.status_code != 200:
            raise DownloadHTTPError(f"GET {url}: {resp.status_code}", resp.status_code)
        return iter([resp.content])


def _updater(overlord: Overlord, tmp_path: Path, *, bootstrap: bool = True) -> Updater:
    """A device's TUF client; without ``bootstrap`` it starts from the root it saved last time
    (python-tuf refreshes once per Updater, as a device does once per check)."""
    root = (overlord.repo.path / "metadata" / "1.root.json").read_bytes() if bootstrap else None
    return Updater(
        metadata_dir=str(tmp_path / "client"),
        metadata_base_url="http://testserver/tuf/metadata/",
        target_base_url="http://testserver/tuf/targets/",
        target_dir=str(tmp_path / "downloads"),
        fetcher=ClientFetcher(overlord.client),
        bootstrap=root,
    )


def test_a_stock_tuf_client_reads_the_served_repository(overlord: Overlord, tmp_path: Path):
    updater = _updater(overlord, tmp_path)
    updater.refresh()
    info = updater.get_targetinfo(manifest_target("1.1.0"))
    assert info is not None
    path = updater.download_target(info)
    assert json.loads(Path(path).read_bytes()) == {"version": "1.1.0"}


def _publish(overlord: Overlord, upload, token: str | None = None):
    headers = {"Authorization": f"Bearer {token or overlord.token(KeyRole.OPERATOR)}"}
    return overlord.client.post("/api/v1/tuf/publish", files=multipart(upload), headers=headers)


def test_publish_accepts_an_offline_signed_release(overlord: Overlord, tmp_path: Path):
    upload = offline_release(overlord.repo, "1.2.0")
    resp = _publish(overlord, upload)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["new_chunks"] == 3
    assert index_target("1.2.0", ImageName.SYSTEM) in body["targets"]
    for digest in upload.chunks:
        assert chunk_file(overlord.repo, digest).exists()
        served = overlord.client.get(f"/tuf/chunks/{digest[:4]}/{digest}.zst")
        assert served.status_code == 200 and served.content == upload.chunks[digest]
    releases = overlord.client.get("/api/v1/releases?kind=os", headers=overlord.as_admin()).json()
    assert "1.2.0" in [r["version"] for r in releases]
    updater = _updater(overlord, tmp_path)
    updater.refresh()
    assert updater.get_targetinfo(manifest_target("1.2.0")) is not None


def test_publish_rejects_a_wrong_signature(overlord: Overlord, tmp_path: Path):
    stranger = KeyStore.generate(tmp_path / "stranger")
    resp = _publish(overlord, offline_release(overlord.repo, "1.2.0", signer_keys=stranger))
    assert resp.status_code == 422
    assert "not signed by the targets key" in resp.json()["detail"]
    assert "1.2.0" not in (overlord.repo.path / "metadata" / "targets.json").read_text()


def test_publish_rejects_a_file_that_does_not_match_its_hash(overlord: Overlord):
    upload = offline_release(overlord.repo, "1.2.0")
    upload.files[manifest_target("1.2.0")] = b'{"version": "6.6.6"}'
    resp = _publish(overlord, upload)
    assert resp.status_code == 422
    assert "does not match its signed hashes" in resp.json()["detail"]


def test_publish_rejects_an_index_with_missing_chunks(overlord: Overlord):
    upload = offline_release(overlord.repo, "1.2.0")
    upload.chunks.popitem()
    resp = _publish(overlord, upload)
    assert resp.status_code == 422
    assert "chunks that are neither uploaded nor stored" in resp.json()["detail"]


def test_publish_rejects_a_corrupt_chunk(overlord: Overlord):
    upload = offline_release(overlord.repo, "1.2.0")
    digest = next(iter(upload.chunks))
    upload.chunks[digest] = upload.chunks[digest][:-3] + b"xyz"
    assert _publish(overlord, upload).status_code == 422


def test_publish_needs_an_operator(overlord: Overlord):
    upload = offline_release(overlord.repo, "1.2.0")
    assert _publish(overlord, upload, token=overlord.token(KeyRole.VIEWER)).status_code == 403


def test_timestamp_is_re_signed_when_due(overlord: Overlord):
    path = overlord.repo.path / "metadata" / "timestamp.json"
    before = json.loads(path.read_bytes())["signed"]["version"]
    assert not tuf_service.refresh_if_due(
        repo_dir=overlord.repo.path, keys_dir=overlord.repo.keydir, interval_s=3600
    )
    assert tuf_service.refresh_if_due(
        repo_dir=overlord.repo.path, keys_dir=overlord.repo.keydir, interval_s=0
    )
    assert json.loads(path.read_bytes())["signed"]["version"] == before + 1


def test_the_write_lease_has_one_holder(overlord: Overlord):
    ctx = overlord.ctx
    with unit_of_work(ctx.sessions) as session:
        assert leases.try_acquire(session, name="tuf-write", holder="replica-1", ttl_s=60)
    with unit_of_work(ctx.sessions) as session:
        assert not leases.try_acquire(session, name="tuf-write", holder="replica-2", ttl_s=60)
        assert leases.try_acquire(session, name="tuf-write", holder="replica-1", ttl_s=60)
    with unit_of_work(ctx.sessions) as session:
        leases.release(session, name="tuf-write", holder="replica-1")
    with unit_of_work(ctx.sessions) as session:
        assert leases.try_acquire(session, name="tuf-write", holder="replica-2", ttl_s=0)
    time.sleep(0.01)
    with unit_of_work(ctx.sessions) as session:
        # An expired lease is free for the taking.
        assert leases.try_acquire(session, name="tuf-write", holder="replica-3", ttl_s=60)


def test_no_repository_yet_is_a_404(database_url, tmp_path):
    from tests.overlord.conftest import make_overlord
    from tests.overlord.tufrepo import Repo

    missing = Repo(tmp_path / "nothing", tmp_path / "nokeys", None)  # type: ignore[arg-type]
    overlord = make_overlord(database_url, missing)
    with overlord.client:
        assert overlord.client.get("/tuf/metadata/root.json").status_code == 404
        resp = overlord.client.get("/api/v1/releases", headers=overlord.as_admin())
        assert resp.status_code == 503 and "no TUF repository" in resp.json()["detail"]


def _offline_copy(overlord: Overlord, tmp_path: Path) -> tuple[Path, KeyStore]:
    """The offline signing machine: a copy of the served repository and of the key directory."""
    repo = tmp_path / "offline" / "repo"
    shutil.copytree(overlord.repo.path, repo)
    shutil.copytree(overlord.repo.keydir, tmp_path / "offline" / "keys")
    return repo, KeyStore.open(tmp_path / "offline" / "keys")


def _publish_signed(overlord: Overlord, **parts: bytes):
    files = [(name, (f"{name}.json", data, "application/json")) for name, data in parts.items()]
    headers = {"Authorization": f"Bearer {overlord.token(KeyRole.OPERATOR)}"}
    return overlord.client.post("/api/v1/tuf/publish", files=files, headers=headers)


def _metadata(repo: Path, name: str) -> bytes:
    return (repo / "metadata" / name).read_bytes()


def test_a_device_holding_the_old_root_follows_a_root_rotation(overlord: Overlord, tmp_path):
    device = _updater(overlord, tmp_path / "device")
    device.refresh()
    offline, keys = _offline_copy(overlord, tmp_path)
    assert rotate_keys(offline, keys, "root") == 2

    resp = _publish_signed(overlord, root=_metadata(offline, "2.root.json"))
    assert resp.status_code == 201, resp.text
    assert resp.json()["root_version"] == 2
    served = overlord.client.get("/tuf/metadata/2.root.json")
    assert served.status_code == 200 and served.content == _metadata(offline, "2.root.json")
    assert _metadata(overlord.repo.path, "root.json") == served.content

    assert _publish(overlord, offline_release(overlord.repo, "1.2.0")).status_code == 201
    device = _updater(overlord, tmp_path / "device", bootstrap=False)
    for client in (device, _updater(overlord, tmp_path / "fresh")):
        client.refresh()
        info = client.get_targetinfo(manifest_target("1.2.0"))
        assert info is not None
        assert json.loads(Path(client.download_target(info)).read_bytes()) == {"version": "1.2.0"}
    trusted = json.loads((tmp_path / "device" / "client" / "root.json").read_bytes())
    assert trusted["signed"]["version"] == 2


def test_a_targets_key_rotation_is_published_with_its_re_signed_targets(
    overlord: Overlord, tmp_path
):
    device = _updater(overlord, tmp_path / "device")
    device.refresh()
    offline, keys = _offline_copy(overlord, tmp_path)
    rotate_keys(offline, keys, "targets")

    alone = _publish_signed(overlord, root=_metadata(offline, "2.root.json"))
    assert alone.status_code == 422
    assert "changes the targets keys" in alone.json()["detail"]
    assert not (overlord.repo.path / "metadata" / "2.root.json").exists()

    resp = _publish_signed(
        overlord,
        root=_metadata(offline, "2.root.json"),
        targets=_metadata(offline, "targets.json"),
    )
    assert resp.status_code == 201, resp.text
    old_key = _publish(overlord, offline_release(overlord.repo, "1.2.0"))
    assert old_key.status_code == 422 and "not signed by the targets key" in old_key.text
    new_key = offline_release(overlord.repo, "1.2.0", signer_keys=keys)
    assert _publish(overlord, new_key).status_code == 201
    device = _updater(overlord, tmp_path / "device", bootstrap=False)
    device.refresh()
    assert device.get_targetinfo(manifest_target("1.2.0")) is not None


def test_an_online_key_rotation_needs_the_new_keys_on_the_overlord_first(
    overlord: Overlord, tmp_path
):
    device = _updater(overlord, tmp_path / "device")
    device.refresh()
    offline, keys = _offline_copy(overlord, tmp_path)
    rotate_keys(offline, keys, "timestamp")
    new_root = _metadata(offline, "2.root.json")

    early = _publish_signed(overlord, root=new_root)
    assert early.status_code == 422
    assert "timestamp keys this publisher does not hold" in early.json()["detail"]
    assert "KEYDIR/online/" in early.json()["hint"]
    assert not (overlord.repo.path / "metadata" / "2.root.json").exists()

    shutil.copy(keys.keydir / "online" / "timestamp.key", overlord.repo.keydir / "online")
    assert _publish_signed(overlord, root=new_root).status_code == 201
    _updater(overlord, tmp_path / "device", bootstrap=False).refresh()
    assert _publish(overlord, offline_release(overlord.repo, "1.2.0")).status_code == 201
    device = _updater(overlord, tmp_path / "device", bootstrap=False)
    device.refresh()
    assert device.get_targetinfo(manifest_target("1.2.0")) is not None


def _signer():
    return signer_from_key(Ed25519PrivateKey.generate())


def _next_root(overlord: Overlord, *, new_keys, threshold=1, version=2, signers=(), expires=None):
    md = Metadata[Root].from_bytes(_metadata(overlord.repo.path, "root.json"))
    for keyid in list(md.signed.roles["root"].keyids):
        md.signed.revoke_key(keyid, "root")
    for signer in new_keys:
        md.signed.add_key(signer.public_key, "root")
    md.signed.roles["root"].threshold = threshold
    md.signed.version = version
    if expires is not None:
        md.signed.expires = expires
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes(JSONSerializer())


def _refusals():
    """Each (name, how to build the uploaded root, the reason the Overlord must give)."""
    new, other = _signer(), _signer()

    def build(overlord: Overlord, case: str) -> bytes:
        old = overlord.repo.keys.get("root")
        if case == "only new keys":
            return _next_root(overlord, new_keys=[new], signers=[new])
        if case == "only old keys":
            return _next_root(overlord, new_keys=[new], signers=old)
        if case == "expired":
            past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
            return _next_root(overlord, new_keys=[new], signers=[*old, new], expires=past)
        if case == "version skip":
            return _next_root(overlord, new_keys=[new], version=3, signers=[*old, new])
        # Two new keys, threshold 2, only one of them signed.
        return _next_root(overlord, new_keys=[new, other], threshold=2, signers=[*old, new])

    return build


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("only new keys", "not signed by the threshold of the current root 1"),
        ("only old keys", "not signed by the threshold of its own root keys"),
        ("version skip", "root version 3 is not the next one (2)"),
        ("expired", "root 2 has already expired"),
        ("below the new threshold", "not signed by the threshold of its own root keys"),
    ],
)
def test_publish_refuses_a_root_that_a_device_would_refuse(overlord: Overlord, case, reason):
    before = {p.name: p.read_bytes() for p in (overlord.repo.path / "metadata").iterdir()}
    resp = _publish_signed(overlord, root=_refusals()(overlord, case))
    assert resp.status_code == 422
    assert reason in resp.json()["detail"]
    after = {p.name: p.read_bytes() for p in (overlord.repo.path / "metadata").iterdir()}
    assert after == before


def test_publish_refuses_a_root_with_a_duplicated_key(overlord: Overlord, tmp_path):
    offline, keys = _offline_copy(overlord, tmp_path)
    rotate_keys(offline, keys, "root")
    doubled = _metadata(offline, "2.root.json").replace(b"{\n", b'{\n "signed": {},\n', 1)
    resp = _publish_signed(overlord, root=doubled)
    assert resp.status_code == 422 and "duplicate" in resp.json()["detail"]


def test_a_zstd_bomb_upload_is_refused_within_bounded_memory(tmp_path):
    """32 KiB that expands to 1 GiB: once peaked at 2.2 GB; now refused after a capped decode."""
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "tests.overlord.publish_memory", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    report = json.loads(result.stdout)
    assert report["bomb_bytes"] < 64 * 1024
    unnamed, named = report["answers"]
    # Without an index naming its size the frame's own declaration is over the 16 MiB cap.
    assert unnamed["status"] == 422 and "more than the 16777216 allowed" in unnamed["detail"]
    assert named["status"] == 422 and "declares 1073741824 bytes" in named["detail"]
    assert report["after"] - report["before"] < 64 * 1024, report
