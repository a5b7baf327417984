"""What must not install, and trials that fail: the device stays on a good committed slot."""

from __future__ import annotations

import hashlib

import pytest
import yaml
import zstandard

from fleetcore.layout import Slot
from fleetcore.release import ImageName, load_index
from fleetcore.version import Version
from fleetcore.wire import TUF_PREFIX, EventKind, UpdateState
from signing.errors import DowngradeRefused
from tests.updater.conftest import v1_device, v1_images, v2_images
from tests.updater.releases import ReleaseRepo, image_bytes
from tests.updater.servers import FleetServer
from updater.disk import BootDisk
from updater.engine import EngineResult
from updater.errors import VersionRejected


@pytest.fixture
def own_repo(tmp_path):
    """A repository of this test's own, free to be damaged."""
    repo = ReleaseRepo(tmp_path / "own")
    repo.publish("1.0.0", v1_images())
    return repo


@pytest.fixture
def own_server(own_repo):
    fleet = FleetServer(own_repo.path)
    yield fleet
    fleet.close()


def make_device(tmp_path, repo):
    return v1_device(tmp_path / "device", repo)


def events(device):
    return [(e.kind, e.reason) for e in device.engine().events.pending()]


def test_tampered_chunk_fails_the_install(tmp_path, own_repo, own_server):
    release = own_repo.publish("2.0.0", v2_images())
    old = {
        c.sha256
        for i in ImageName
        for c in load_index(
            (own_repo.base / "build/release-1.0.0" / f"{i.value}.index.json").read_bytes()
        ).chunks
    }
    new = load_index((release / "system.index.json").read_bytes()).chunks
    changed = next(c for c in new if c.sha256 not in old)
    target = own_repo.path / "chunks" / changed.sha256[:4] / f"{changed.sha256}.zst"
    target.write_bytes(zstandard.ZstdCompressor().compress(b"\0" * changed.size))
    device = make_device(tmp_path, own_repo)

    assert device.engine().start(Version("2.0.0"), own_server.tuf_url) is EngineResult.IDLE
    state = device.engine().store.load()
    assert state.state is UpdateState.FAILED
    assert changed.sha256 in state.last_failure and "signed hash" in state.last_failure
    assert (EventKind.INSTALL_FAILED, state.last_failure) in events(device)
    assert device.booted() == (Slot.A, False) and device.committed() is Slot.A
    assert not (device.roots.boot_config / "simfw" / "tryboot").exists()


def test_wrong_image_hash_fails_read_back(tmp_path, own_repo, own_server):
    own_repo.publish("2.0.0", v2_images(), claimed_sha256=hashlib.sha256(b"other").hexdigest())
    device = make_device(tmp_path, own_repo)
    assert device.engine().start(Version("2.0.0"), own_server.tuf_url) is EngineResult.IDLE
    state = device.engine().store.load()
    assert state.state is UpdateState.FAILED
    assert "does not read back as the signed system image" in state.last_failure
    assert Slot.B not in state.slot_versions
    assert device.committed() is Slot.A


def test_slot_changed_on_the_card_after_a_cut_trial_is_refused_then_written_again(device, server):
    """Issue 17's scenario 3 (the QEMU story does it on the real image): the slot verified and
    the power went before the trial; one byte of it changed on the card since. The next start
    refuses the trial and reports why, and the attempt after that writes the slot again
    instead of re-verifying the same bytes forever."""
    engine = device.engine()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    device.power_on(requested_reboot=False)  # cut before the trial: the flag is gone
    system_b = BootDisk.open(device.disk_path).partitions["system_b"]
    with device.disk_path.open("r+b") as card:
        card.seek(system_b.offset + 1_000_000)
        byte = card.read(1)
        card.seek(-1, 1)
        card.write(bytes([byte[0] ^ 0xFF]))

    engine = device.engine()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.IDLE  # reports the cut
    assert engine.store.load().state is UpdateState.ROLLED_BACK
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.IDLE
    state = engine.store.load()
    assert state.state is UpdateState.FAILED
    assert "system_b does not read back as the signed system image" in state.last_failure
    assert (EventKind.INSTALL_FAILED, state.last_failure) in events(device)
    assert Slot.B not in state.slot_versions
    assert device.committed() is Slot.A
    assert not (device.roots.boot_config / "simfw" / "tryboot").exists()

    assert device.engine().start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    assert device.engine().store.load().slot_versions[Slot.B] == Version("2.0.0")


def test_downgrade_is_refused(tmp_path, own_repo, own_server):
    own_repo.publish(
        "0.9.0", {ImageName.BOOT: image_bytes(9, 4096), ImageName.SYSTEM: image_bytes(8, 8192)}
    )
    device = make_device(tmp_path, own_repo)
    with pytest.raises(DowngradeRefused, match=r"lower than the installed 1\.0\.0"):
        device.engine().start(Version("0.9.0"), own_server.tuf_url)
    assert own_server.fetched_chunks() == 0
    assert device.engine().store.load().state is UpdateState.IDLE


def test_downgrade_refused_even_when_the_device_is_told_it_runs_lower(
    tmp_path, own_repo, own_server
):
    """The recorded floor holds even if the version file of the running image is wrong."""
    own_repo.publish(
        "0.9.0", {ImageName.BOOT: image_bytes(9, 4096), ImageName.SYSTEM: image_bytes(8, 8192)}
    )
    device = make_device(tmp_path, own_repo)
    store = device.engine().store
    state = store.load()
    state.version_floor = Version("1.0.0")
    state.slot_versions = {}
    store.save(state)
    (device.roots.etc / "version").write_text("0.1.0\n")
    with pytest.raises(DowngradeRefused, match=r"floor 1\.0\.0"):
        device.engine().start(Version("0.9.0"), own_server.tuf_url)


def test_failed_health_check_falls_back_with_reason(device, server):
    device.add_health_hook("camera", "echo 'no camera on /dev/video0' >&2; exit 1")
    assert device.engine().start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    device.power_on()
    assert device.booted() == (Slot.B, True)
    assert device.settle() == [EngineResult.REBOOTING, EngineResult.IDLE]
    # The failed trial rebooted normally: the old, committed slot runs again and reports.
    assert device.booted() == (Slot.A, False)
    assert device.committed() is Slot.A
    state = device.engine().store.load()
    assert state.state is UpdateState.ROLLED_BACK
    assert state.last_failure == "health check failed: hook camera: no camera on /dev/video0"
    assert (EventKind.ROLLBACK, state.last_failure) in events(device)
    for image, data in v1_images().items():
        assert device.slot_sha256(Slot.A, image, len(data)) == hashlib.sha256(data).hexdigest()


def test_wanted_check_failure_does_not_block_commit(device, server):
    device.add_health_hook("nice-to-have", "exit 3", required=False)
    device.engine().start(Version("2.0.0"), server.tuf_url)
    device.power_on()
    assert device.settle() == [EngineResult.IDLE]
    assert device.engine().store.load().state is UpdateState.COMMITTED


def test_role_health_hook_decides_when_required(device, server):
    (device.roots.data_config).parent.mkdir(parents=True, exist_ok=True)
    device.roots.data_config.write_text("health:\n  roles: required\n")
    device.engine().start(Version("2.0.0"), server.tuf_url)
    device.power_on()
    device.settle(lambda: device.engine(role_hook=lambda: [("zigbee", False, "not ready")]))
    state = device.engine().store.load()
    assert state.state is UpdateState.ROLLED_BACK
    assert state.last_failure == "health check failed: role zigbee: not ready"


def test_trials_are_bounded_then_the_version_is_marked_bad(device, server):
    device.add_health_hook("always-fails", "exit 1")
    for attempt in range(1, 4):
        assert device.engine().start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
        device.power_on()
        device.settle()
        assert device.engine().store.load().attempts(Version("2.0.0")) == attempt
    state = device.engine().store.load()
    assert state.is_bad(Version("2.0.0"))
    reported = [kind for kind, _ in events(device)]
    assert EventKind.VERSION_MARKED_BAD in reported
    assert reported.count(EventKind.ROLLBACK) == 3  # every failed trial, reported once
    with pytest.raises(VersionRejected, match="marked bad"):
        device.engine().start(Version("2.0.0"), server.tuf_url)
    # Retried trials reuse the verified slot: the chunks came once.
    assert max(server.chunk_requests.values()) == 1


def test_power_cut_during_trial_counts_as_a_failed_attempt(device, server):
    assert device.engine().start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    device.power_on()  # trial boot begins...
    engine = device.engine()
    state = engine.store.load()
    state.state = UpdateState.TRIAL  # ...the agent entered the trial, then the power went
    state.trial_boot_id = device.roots.boot_id_file.read_text().strip()
    engine.store.save(state)
    device.power_on(requested_reboot=False)  # the tryboot flag is gone: committed slot boots
    assert device.booted() == (Slot.A, False)
    assert device.settle() == [EngineResult.IDLE]
    state = device.engine().store.load()
    assert state.state is UpdateState.ROLLED_BACK
    assert "ended before health checks passed" in state.last_failure


def test_an_image_above_the_size_cap_fails_the_install(device, server):
    device.roots.data_config.parent.mkdir(parents=True, exist_ok=True)
    device.roots.data_config.write_text(yaml.safe_dump({"transfer": {"max_image_bytes": 1 << 20}}))
    assert device.engine().start(Version("2.0.0"), server.tuf_url) is EngineResult.IDLE
    state = device.engine().store.load()
    assert state.state is UpdateState.FAILED
    assert "above the cap of 1048576" in state.last_failure
    assert server.fetched_chunks() == 0


def test_too_little_free_space_waits_reported_once_and_stages_nothing(device, server):
    device.roots.data_config.parent.mkdir(parents=True, exist_ok=True)
    device.roots.data_config.write_text(
        yaml.safe_dump({"transfer": {"min_free_data_bytes": 1 << 60}})
    )
    engine = device.engine()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.WAITING
    assert engine.resume() is EngineResult.WAITING
    state = engine.store.load()
    assert state.state is UpdateState.DOWNLOADING  # goes on once space is back
    reports = [e for e in engine.events.pending() if e.kind is EventKind.AGENT_ERROR]
    assert len(reports) == 1
    assert "needed to stage an install" in (reports[0].reason or "")
    assert not list(device.roots.install_dir.glob("*"))
    assert not [r for r in server.requests if r.startswith(TUF_PREFIX)]
