"""Release repository garbage collection: what devices need stays; a stock client still works."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from fleetcore.release import ImageName, index_target, manifest_target
from overlord.auth.models import KeyRole
from overlord.cli import main
from overlord.db import make_engine, make_sessionmaker, unit_of_work
from overlord.devices.models import Device
from signing.repository import refresh_timestamp
from tests.overlord.conftest import Overlord, heartbeat
from tests.overlord.test_tuf import _publish, _updater
from tests.overlord.tufrepo import chunk_file, offline_release

SHARED = b"a chunk two images have in common" * 40
DAYS_AGO = time.time() - 3 * 86400


def _heartbeat(overlord: Overlord, auth, device_id: str, version: str, roles=None) -> None:
    resp = overlord.client.post(
        f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(version, roles=roles), headers=auth
    )
    assert resp.status_code == 204, resp.text


@pytest.fixture
def fleet(overlord: Overlord):
    """OS 1.0.0 and 1.1.0 (manifest only), 1.2.0-1.6.0 with chunks; camera 2.0.0-2.3.0.

    1.2.0 and 1.6.0 share a chunk. A device runs 1.3.0 and camera 2.0.0; one runs 1.4.0
    after 1.0.0 (its other slot); one is assigned 1.1.0. Older metadata is three days old.
    """
    uploads = {}
    for version in ("1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0"):
        shared = (SHARED,) if version in ("1.2.0", "1.6.0") else ()
        uploads[version] = offline_release(overlord.repo, version, shared=shared)
        assert _publish(overlord, uploads[version]).status_code == 201
    for version in ("2.1.0", "2.2.0", "2.3.0"):
        overlord.repo.add_role("camera", version)
    for path in (overlord.repo.path / "metadata").iterdir():
        os.utime(path, (DAYS_AGO, DAYS_AGO))
    refresh_timestamp(overlord.repo.path, overlord.repo.keys)

    runner, auth = overlord.enroll("serial-a", version="1.3.0")
    camera = {"name": "camera", "version": "2.0.0", "health": "healthy"}
    _heartbeat(overlord, auth, runner, "1.3.0", roles=[camera])
    updated, auth = overlord.enroll("serial-b", version="1.0.0")
    _heartbeat(overlord, auth, updated, "1.0.0")
    _heartbeat(overlord, auth, updated, "1.4.0")
    assigned, _auth = overlord.enroll("serial-c", version="1.5.0")
    engine = make_engine(overlord.settings.database_url)
    with unit_of_work(make_sessionmaker(engine)) as session:
        session.execute(
            update(Device).where(Device.id == assigned).values(desired_os_version="1.1.0")
        )
    engine.dispose()
    return uploads


def _gc(overlord: Overlord, **body):
    return overlord.client.post("/api/v1/releases/gc", json=body, headers=overlord.as_admin())


def _served(overlord: Overlord) -> set[str]:
    return {
        str(p.relative_to(overlord.repo.path)) for p in overlord.repo.path.rglob("*") if p.is_file()
    }


def test_gc_keeps_what_devices_need_and_the_newest(overlord: Overlord, fleet, tmp_path):
    before = _served(overlord)
    dry = _gc(overlord, dry_run=True, keep_last=2)
    assert dry.status_code == 200, dry.text
    assert _served(overlord) == before

    resp = _gc(overlord, keep_last=2)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["files"] == dry.json()["files"] and body["deleted_bytes"] > 0
    assert sorted(body["dropped_releases"]) == [
        manifest_target("1.2.0"),
        "roles/camera/2.1.0.tar.zst",
    ]
    kept = set(body["kept_releases"])
    for version in ("1.0.0", "1.1.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0"):
        assert manifest_target(version) in kept
    for version in ("2.0.0", "2.2.0", "2.3.0"):
        assert f"roles/camera/{version}.tar.zst" in kept

    after = _served(overlord)
    assert before - after == {f["path"] for f in body["files"]}
    # Chunks: 1.2.0's own are gone, the one it shared with 1.6.0 stays, kept releases complete.
    for digest in fleet["1.2.0"].chunks:
        assert chunk_file(overlord.repo, digest).exists() == (
            digest == hashlib.sha256(SHARED).hexdigest()
        )
    for version in ("1.3.0", "1.4.0", "1.5.0", "1.6.0"):
        assert all(chunk_file(overlord.repo, d).exists() for d in fleet[version].chunks)
    # Metadata: every root, the current versions, no three-day-old snapshot or targets.
    metadata = {p.name for p in (overlord.repo.path / "metadata").iterdir()}
    assert "1.root.json" in metadata and "timestamp.json" in metadata
    snapshot = json.loads((overlord.repo.path / "metadata" / "snapshot.json").read_bytes())
    targets_version = snapshot["signed"]["meta"]["targets.json"]["version"]
    assert {n for n in metadata if n.endswith(".snapshot.json")} == {
        f"{snapshot['signed']['version']}.snapshot.json"
    }
    assert {n for n in metadata if n.endswith(".targets.json")} == {
        f"{targets_version}.targets.json"
    }

    # A stock TUF client from the first root still refreshes and downloads a kept release.
    client = _updater(overlord, tmp_path / "device")
    client.refresh()
    info = client.get_targetinfo(index_target("1.6.0", ImageName.SYSTEM))
    assert info is not None
    assert Path(client.download_target(info)).read_bytes() == fleet["1.6.0"].files[info.path]
    listed = overlord.client.get("/api/v1/releases", headers=overlord.as_admin()).json()
    assert "1.2.0" not in {r["version"] for r in listed if r["kind"] == "os"}

    again = _gc(overlord, keep_last=2).json()
    assert again["deleted_files"] == 0


def test_gc_needs_an_admin(overlord: Overlord):
    headers = {"Authorization": f"Bearer {overlord.token(KeyRole.OPERATOR)}"}
    assert overlord.client.post("/api/v1/releases/gc", headers=headers).status_code == 403
    assert (
        overlord.client.post("/api/v1/releases/gc", headers=overlord.as_admin()).status_code == 200
    )


def test_gc_cli_dry_run_lists_files_with_sizes(overlord: Overlord, fleet, monkeypatch, capsys):
    monkeypatch.setenv("OVERLORD_DATABASE_URL", overlord.settings.database_url)
    monkeypatch.setenv("OVERLORD_REPO_DIR", str(overlord.repo.path))
    monkeypatch.setenv("OVERLORD_KEYS_DIR", str(overlord.repo.keydir))
    before = _served(overlord)
    assert main(["releases", "gc", "--dry-run", "--keep", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert _served(overlord) == before
    own = chunk_file(overlord.repo, next(iter(fleet["1.2.0"].chunks)))
    listed = {line.split()[-1]: int(line.split()[2]) for line in lines[:-1]}
    assert listed[str(own.relative_to(overlord.repo.path))] == own.stat().st_size
    assert lines[-1].startswith(f"would delete {len(listed)} files")
    assert main(["releases", "gc", "--keep", "2"]) == 0
    assert not own.exists()
