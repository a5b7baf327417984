"""The release repository: served to a stock TUF client, published through the upload API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from starlette.testclient import TestClient
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from fleetcore.release import ImageName, index_target, manifest_target
from overlord import leases
from overlord.auth.models import KeyRole
from overlord.db import unit_of_work
from overlord.tuf import service as tuf_service
from signing.keys import KeyStore
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


def _updater(overlord: Overlord, tmp_path: Path) -> Updater:
    root = (overlord.repo.path / "metadata" / "1.root.json").read_bytes()
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
    ctx = overlord.client.app.state.ctx  # type: ignore[attr-defined]
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
