"""Installs end to end: real GPT disk image, real TUF repository over real HTTP."""

from __future__ import annotations

import hashlib

from fleetcore.layout import Slot
from fleetcore.release import ImageName
from fleetcore.version import Version
from fleetcore.wire import EventKind, UpdateState
from tests.updater.conftest import v1_images, v2_images
from tests.updater.releases import image_bytes, patched
from tests.updater.servers import FleetServer
from updater.engine import EngineResult


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_slot_holds(device, slot, images):
    for image, data in images.items():
        assert device.slot_sha256(slot, image, len(data)) == sha(data)


def test_full_install_trial_and_commit(device, server):
    engine = device.engine()
    # No seed: forget slot A's indexes, so every chunk comes over HTTP.
    for path in device.roots.slot_dir(Slot.A).iterdir():
        path.unlink()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    state = engine.store.load()
    assert state.state is UpdateState.TRIAL_REBOOT
    assert_slot_holds(device, Slot.B, v2_images())
    assert_slot_holds(device, Slot.A, v1_images())  # the active slot is untouched
    assert max(server.chunk_requests.values()) == 1
    assert server.chunk_requests.total() == engine.last_stats["fetched_chunks"]

    device.power_on()
    assert device.booted() == (Slot.B, True)
    assert device.settle() == [EngineResult.IDLE]
    state = device.engine().store.load()
    assert state.state is UpdateState.COMMITTED
    assert device.committed() is Slot.B
    assert state.version_floor == Version("2.0.0")
    kinds = [e.kind for e in device.engine().events.pending()]
    assert kinds[-2:] == [EventKind.TRIAL_STARTED, EventKind.UPDATE_COMMITTED]

    device.power_on()  # an ordinary reboot stays on the committed slot
    assert device.booted() == (Slot.B, False)


def test_seeded_install_fetches_only_changed_chunks(device, server, repo):
    engine = device.engine()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    stats = engine.last_stats
    total = sum(len(c) for c in repo_index_chunks(repo, "2.0.0"))
    assert stats["seeded_chunks"] > 0
    assert 0 < stats["fetched_chunks"] <= 8
    assert stats["fetched_chunks"] + stats["seeded_chunks"] == total
    assert_slot_holds(device, Slot.B, v2_images())


def repo_index_chunks(repo, version):
    from fleetcore.release import load_index

    release = repo.base / "build" / f"release-{version}"
    return [
        load_index((release / f"{image.value}.index.json").read_bytes()).chunks
        for image in ImageName
    ]


def test_slot_b_gets_its_own_boot_bytes(device, repo_template, tmp_path):
    """Slot B's boot image differs in a few bytes (cmdline.txt names system_b): the manifest's
    patches are applied as chunks land, and read-back checks the slot-B hash."""
    repo = repo_template.copy(tmp_path / "repo-copy")
    images = v2_images()
    repo.publish("3.0.0", images, slot_b_boot_patch=(4096, b"root=PARTLABEL=system_b"))
    server = FleetServer(repo.path)
    try:
        engine = device.engine()
        assert engine.start(Version("3.0.0"), server.tuf_url) is EngineResult.REBOOTING
    finally:
        server.close()
    boot_b = patched(images[ImageName.BOOT], 4096, b"root=PARTLABEL=system_b")
    assert_slot_holds(
        device, Slot.B, {ImageName.BOOT: boot_b, ImageName.SYSTEM: images[ImageName.SYSTEM]}
    )
    device.power_on()
    assert device.settle() == [EngineResult.IDLE]
    assert device.committed() is Slot.B


def test_repeated_content_is_fetched_once(device, repo_template, tmp_path):
    """Real images repeat content (zeroed space, duplicate files): a digest that occurs several
    times in an image is downloaded once, and its later occurrences are copied in the slot."""
    repo = repo_template.copy(tmp_path / "repo-copy")
    block = image_bytes(7, 300_000)
    images = v2_images()
    system = images[ImageName.SYSTEM]
    repeated = system[:1_000_000] + block * 6 + system[1_000_000 + 6 * len(block) :]
    images = {ImageName.BOOT: images[ImageName.BOOT], ImageName.SYSTEM: repeated}
    repo.publish("3.0.0", images)
    for path in device.roots.slot_dir(Slot.A).iterdir():
        path.unlink()  # unseeded: everything not repeated comes over HTTP
    server = FleetServer(repo.path)
    try:
        engine = device.engine()
        assert engine.start(Version("3.0.0"), server.tuf_url) is EngineResult.REBOOTING
    finally:
        server.close()
    assert_slot_holds(device, Slot.B, images)
    stats = engine.last_stats
    assert stats["copied_chunks"] > 0
    assert max(server.chunk_requests.values()) == 1
    total = sum(len(c) for c in repo_index_chunks(repo, "3.0.0"))
    assert stats["fetched_chunks"] + stats["copied_chunks"] == total


def test_read_back_drops_the_written_range_from_the_page_cache(device, server, monkeypatch):
    """The verification reads the card, not the pages the writer just filled."""
    import os

    dropped: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def spy(fd, offset, length, advice):
        if advice == os.POSIX_FADV_DONTNEED:
            dropped.append((offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    engine = device.engine()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    disk = engine.disk
    expected = {
        (disk.slot_partition(image.value, Slot.B).offset, len(data))
        for image, data in v2_images().items()
    }
    assert expected <= set(dropped)


def test_a_seed_index_that_does_not_describe_the_slot_falls_back_to_fetching(device, server, repo):
    """Slot A's index claims chunks past the end of its partition: they are fetched."""
    from fleetcore.release import Chunk, dump_index, load_index

    engine = device.engine()
    seed_file = device.roots.slot_dir(Slot.A) / "system.index.json"
    release = repo.base / "build" / "release-2.0.0"
    wanted = load_index((release / "system.index.json").read_bytes())
    beyond = engine.disk.slot_partition("system", Slot.A).size
    filler = Chunk(sha256="f" * 64, size=beyond)
    lying = wanted.model_copy(
        update={"chunks": (filler, *wanted.chunks), "image_size": beyond + wanted.image_size}
    )
    seed_file.write_bytes(dump_index(lying))
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    assert engine.last_stats["fetched_chunks"] > 0
    assert_slot_holds(device, Slot.B, v2_images())
