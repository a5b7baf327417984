"""Seeded installs that fetch changed chunks as deltas (ADR 0073): exact slot bytes, resumed
after an interruption, and every failure of a delta falling back to the full chunk."""

from __future__ import annotations

import json
import logging

import pytest

from fleetcore.delta import deltas_target, load_deltas
from fleetcore.layout import Slot
from fleetcore.release import ImageName, load_index
from fleetcore.version import Version
from tests.updater.conftest import v1_images
from tests.updater.releases import ReleaseRepo, image_bytes, patched
from tests.updater.servers import FleetServer
from tests.updater.test_install import assert_slot_holds
from tests.updater.test_resume import override, unseed
from updater.engine import EngineResult

VERSION = "3.0.0"


def v3_images() -> dict[ImageName, bytes]:
    """1.0.0 with small changes in many chunks: each one's delta is far smaller than it."""
    old = v1_images()
    system = old[ImageName.SYSTEM]
    for n in range(12):
        system = patched(system, 200_000 + n * 400_000, image_bytes(100 + n, 64))
    boot = patched(old[ImageName.BOOT], 500_000, b"kernel-3" * 8)
    return {ImageName.BOOT: boot, ImageName.SYSTEM: system}


@pytest.fixture(scope="module")
def delta_repo(repo_template: ReleaseRepo, tmp_path_factory: pytest.TempPathFactory) -> ReleaseRepo:
    repo = repo_template.copy(tmp_path_factory.mktemp("delta-repo") / "repo")
    repo.publish(VERSION, v3_images(), delta_from=repo.base / "build" / "release-1.0.0")
    return repo


@pytest.fixture
def delta_server(delta_repo: ReleaseRepo):
    server = FleetServer(delta_repo.path)
    yield server
    server.close()


def delta_files(repo: ReleaseRepo) -> list:
    return sorted((repo.path / "deltas").rglob("*.zst"))


def requested(server: FleetServer, folder: str) -> int:
    return sum(n for path, n in server.chunk_requests.items() if path.startswith(folder))


def test_seeded_install_fetches_deltas_and_writes_the_exact_slot(device, delta_repo, delta_server):
    engine = device.engine()
    assert engine.start(Version(VERSION), delta_server.tuf_url) is EngineResult.REBOOTING
    assert_slot_holds(device, Slot.B, v3_images())
    stats = engine.last_stats
    assert stats["delta_chunks"] == len(delta_files(delta_repo)) > 10
    assert stats["delta_fallbacks"] == 0
    assert requested(delta_server, "chunks/") == 0  # every changed chunk came as a delta
    assert delta_server.chunk_bytes < 12 * 1024  # against 16 KiB for one full chunk
    device.power_on()
    assert device.settle() == [EngineResult.IDLE]
    assert device.committed() is Slot.B


def test_interrupted_delta_install_resumes_without_fetching_twice(device, delta_repo, delta_server):
    override(
        device,
        parallel_fetches=2,
        pipeline_depth=2,
        checkpoint_bytes=64 * 1024,
        retries=0,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
        min_free_data_bytes=0,
    )
    delta_server.down_after_chunks = 5
    engine = device.engine()
    assert engine.start(Version(VERSION), delta_server.tuf_url) is EngineResult.WAITING
    delta_server.down, delta_server.down_after_chunks = False, None
    assert device.engine().resume() is EngineResult.REBOOTING
    assert_slot_holds(device, Slot.B, v3_images())
    assert max(delta_server.chunk_requests.values()) == 1
    assert requested(delta_server, "chunks/") == 0


def test_a_device_without_the_seed_fetches_full_chunks(device, delta_repo, delta_server):
    unseed(device)
    engine = device.engine()
    assert engine.start(Version(VERSION), delta_server.tuf_url) is EngineResult.REBOOTING
    assert_slot_holds(device, Slot.B, v3_images())
    assert engine.last_stats["delta_chunks"] == 0
    assert requested(delta_server, "deltas/") == 0


def test_a_base_changed_on_the_active_slot_falls_back_to_the_full_chunk(
    device, delta_repo, delta_server, caplog
):
    """The seed index says the base is there, the slot's bytes say otherwise."""
    deltas = load_deltas(
        (delta_repo.base / "build" / f"release-{VERSION}" / "delta-lists/1.0.0.json").read_bytes()
    )
    old = load_index(
        (delta_repo.base / "build" / "release-1.0.0" / "system.index.json").read_bytes()
    )
    base = deltas.deltas[-1].bases[0]
    at = dict(zip((c.sha256 for c in old.chunks), old.offsets(), strict=True))[base.sha256]
    engine = device.engine()
    part = engine.disk.slot_partition("system", Slot.A)
    with device.disk_path.open("r+b") as disk:
        disk.seek(part.offset + at)
        disk.write(b"\xff" * 8)
    with caplog.at_level(logging.WARNING, logger="updater.install"):
        assert engine.start(Version(VERSION), delta_server.tuf_url) is EngineResult.REBOOTING
    assert_slot_holds(device, Slot.B, v3_images())
    assert engine.last_stats["delta_fallbacks"] >= 1
    assert requested(delta_server, "chunks/") >= 1
    assert "delta refused (a base of the delta of chunk" in caplog.text


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "expanding"])
def test_a_broken_delta_falls_back_to_the_full_chunk(device, delta_repo, tmp_path, caplog, damage):
    repo = delta_repo.copy(tmp_path / "repo-copy")
    victim = delta_files(repo)[0]
    original = victim.read_bytes()
    if damage == "missing":
        victim.unlink()
    elif damage == "garbage":
        victim.write_bytes(bytes(len(original)))
    elif damage == "truncated":
        victim.write_bytes(original[:-3] + b"\0\0\0")  # same length, the last block cut
    else:  # a valid frame of the same length that makes more than the chunk's size
        import zstandard

        bigger = zstandard.ZstdCompressor(level=19).compress(bytes(1 << 20))
        victim.write_bytes(bigger[: len(original)].ljust(len(original), b"\0"))
    server = FleetServer(repo.path)
    try:
        engine = device.engine()
        with caplog.at_level(logging.WARNING, logger="updater.install"):
            assert engine.start(Version(VERSION), server.tuf_url) is EngineResult.REBOOTING
    finally:
        server.close()
    assert_slot_holds(device, Slot.B, v3_images())
    assert engine.last_stats["delta_fallbacks"] == 1
    assert requested(server, "chunks/") == 1
    refused = [r for r in caplog.records if "delta refused" in r.getMessage()]
    assert len(refused) == 1 and "\n" not in refused[0].getMessage()


def test_a_hostile_signed_delta_list_is_refused_and_full_chunks_fetched(
    device, delta_repo, tmp_path, caplog
):
    """Signed, but two entries for one chunk: the device refuses the list, with one line,
    and installs from full chunks."""
    from signing.repository import add_targets
    from signing.targets import TargetSpec

    repo = delta_repo.copy(tmp_path / "repo-copy")
    listed = repo.base / "build" / f"release-{VERSION}" / "delta-lists" / "1.0.0.json"
    document = json.loads(listed.read_bytes())
    document["deltas"].append(document["deltas"][0])
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(document))
    add_targets(repo.path, repo.keys, [TargetSpec(hostile, deltas_target(VERSION, "1.0.0"))])
    server = FleetServer(repo.path)
    try:
        engine = device.engine()
        with caplog.at_level(logging.WARNING, logger="updater.release"):
            assert engine.start(Version(VERSION), server.tuf_url) is EngineResult.REBOOTING
    finally:
        server.close()
    assert_slot_holds(device, Slot.B, v3_images())
    assert engine.last_stats["delta_chunks"] == 0
    assert requested(server, "deltas/") == 0
    refused = [r.getMessage() for r in caplog.records if "delta list" in r.getMessage()]
    assert len(refused) == 1 and "has two deltas" in refused[0] and "\n" not in refused[0]
