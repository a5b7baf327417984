"""A network outage and a forged signature end an install differently, whatever the except order.

An outage while TUF metadata is refreshed waits for the network (the install resumes later);
metadata whose signature does not verify fails the install. Before ``DownloadError`` was its
own branch it subclassed ``VerificationError``, so only the order of the engine's except
clauses kept the two apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetcore.version import Version
from fleetcore.wire import EventKind, UpdateState
from signing.errors import DownloadError, SigningError, VerificationError
from tests.updater.conftest import v1_device, v1_images, v2_images
from tests.updater.releases import ReleaseRepo
from tests.updater.servers import FleetServer
from updater.engine import EngineResult


@pytest.fixture
def own_repo(tmp_path):
    repo = ReleaseRepo(tmp_path / "own")
    repo.publish("1.0.0", v1_images())
    repo.publish("2.0.0", v2_images())
    return repo


@pytest.fixture
def own_server(own_repo):
    fleet = FleetServer(own_repo.path)
    yield fleet
    fleet.close()


def test_download_error_is_no_verification_error():
    assert issubclass(DownloadError, SigningError)
    assert not issubclass(DownloadError, VerificationError)
    assert not issubclass(VerificationError, DownloadError)


def test_an_outage_during_refresh_waits_for_the_network(tmp_path, own_repo, own_server):
    device = v1_device(tmp_path / "device", own_repo)
    own_server.down = True
    assert device.engine().start(Version("2.0.0"), own_server.tuf_url) is EngineResult.WAITING
    state = device.engine().store.load()
    assert state.state is UpdateState.DOWNLOADING
    assert state.last_failure is None
    kinds = [event.kind for event in device.engine().events.pending()]
    assert EventKind.INSTALL_FAILED not in kinds

    own_server.down = False
    assert device.engine().resume() is EngineResult.REBOOTING


def test_a_forged_timestamp_signature_fails_the_install(tmp_path, own_repo, own_server):
    device = v1_device(tmp_path / "device", own_repo)
    path = own_repo.path / "metadata" / "timestamp.json"
    metadata = json.loads(path.read_text())
    sig = metadata["signatures"][0]["sig"]
    metadata["signatures"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    path.write_text(json.dumps(metadata))

    assert device.engine().start(Version("2.0.0"), own_server.tuf_url) is EngineResult.IDLE
    state = device.engine().store.load()
    assert state.state is UpdateState.FAILED
    assert "timestamp" in (state.last_failure or "")


def _served(metadata: Path, role: str) -> Path:
    """The file a device fetches for ``role``: the newest ``N.role.json``, else ``role.json``."""
    versions = sorted(metadata.glob(f"*.{role}.json"), key=lambda p: int(p.name.split(".")[0]))
    return versions[-1] if versions else metadata / f"{role}.json"


@pytest.mark.parametrize("role", ["timestamp", "targets"])
def test_metadata_naming_a_key_twice_fails_the_install_and_the_honest_one_updates(
    tmp_path, own_repo, own_server, role
):
    """Validly signed metadata with ``signed`` named twice: python-tuf keeps the last (the
    signed one) and trusted it; a reader that keeps the first sees another document."""
    device = v1_device(tmp_path / "device", own_repo)
    path = _served(own_repo.path / "metadata", role)
    honest = path.read_bytes()
    first = json.dumps({"signed": {"_type": role, "version": 1}})[:-1].encode()
    path.write_bytes(first + b", " + honest.lstrip()[1:])

    assert device.engine().start(Version("2.0.0"), own_server.tuf_url) is EngineResult.IDLE
    state = device.engine().store.load()
    assert state.state is UpdateState.FAILED
    assert "not strict JSON" in (state.last_failure or "")
    assert "duplicate key 'signed'" in (state.last_failure or "")
    failed = [e for e in device.engine().events.pending() if e.kind is EventKind.INSTALL_FAILED]
    assert failed and "duplicate key" in (failed[-1].reason or "")

    path.write_bytes(honest)
    assert device.engine().start(Version("2.0.0"), own_server.tuf_url) is EngineResult.REBOOTING
