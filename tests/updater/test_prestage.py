"""Pre-staged installs on the real agent (ADR 0082): a hint stages the release into the
inactive slot without rebooting, the staged record survives a restart, and admission goes
straight to the trial unless the staged slot no longer passes the pre-trial checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fleetcore.layout import Slot
from fleetcore.release import ImageName
from fleetcore.version import Version
from fleetcore.wire import UpdateState
from tests.updater.agents import make_agent, setup_device
from tests.updater.conftest import SYSTEM_SIZE, v1_device, v2_images
from tests.updater.device import SimDevice
from tests.updater.releases import ReleaseRepo, image_bytes, patched
from tests.updater.servers import FleetServer
from tests.updater.test_cli import cli
from updater.agent import Agent
from updater.cli import main
from updater.disk import BootDisk
from updater.engine import EngineResult

V2 = Version("2.0.0")


def _sha256_v2() -> str:
    return hashlib.sha256(v2_images()[ImageName.SYSTEM]).hexdigest()


def kinds(server: FleetServer) -> list[str]:
    return [str(e["kind"]) for e in server.events]


def staged_agent(device: SimDevice, server: FleetServer, hint: str = "2.0.0") -> Agent:
    """An enrolled 1.0.0 device that has staged ``hint`` from a running rollout's hint."""
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()  # enrol
    server.set_desired("1.0.0", prestage=hint)
    agent.cycle()
    return agent


def test_a_hint_stages_without_rebooting_and_a_restart_does_not_repeat_it(device, server, capsys):
    agent = staged_agent(device, server)
    state = agent.engine.store.load()
    assert state.state is UpdateState.IDLE and state.staging_from is None
    assert state.slot_versions[Slot.B] == V2
    assert device.booted() == (Slot.A, False)  # nothing rebooted, no trial requested
    assert state.trial_attempts == {}
    assert agent.engine.staged_version() == V2
    fetched = server.fetched_chunks()
    assert fetched > 0
    assert device.slot_sha256(Slot.B, ImageName.SYSTEM, SYSTEM_SIZE) == _sha256_v2()
    # Staging is not an install the Overlord started: no install events, no in-progress state.
    assert kinds(server) == ["enrolled"]
    assert all(b.update_state is UpdateState.IDLE for b in server.heartbeats)
    agent.cycle()  # the heartbeat after staging names it
    assert server.heartbeats[-1].staged_version == V2

    assert main(cli(device, "status", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["staged_version"] == "2.0.0"
    restarted = make_agent(device)  # a new process: the record on /data says it is done
    restarted.cycle()
    assert server.fetched_chunks() == fetched
    assert server.heartbeats[-1].staged_version == V2
    assert restarted.engine.store.load().state is UpdateState.IDLE


def test_admission_goes_straight_to_the_trial_without_writing_the_slot(device, server):
    staged_agent(device, server)
    agent = make_agent(device)  # a fresh process: its writer statistics start empty
    fetched = server.fetched_chunks()
    disk_written = device.disk_path.stat().st_mtime_ns
    server.set_desired("2.0.0")  # admitted: the hint goes, os names the staged release
    agent.cycle()
    assert agent.engine.store.load().state is UpdateState.TRIAL_REBOOT
    assert server.fetched_chunks() == fetched
    assert agent.engine.last_stats == {}  # the slot writer never ran
    assert device.disk_path.stat().st_mtime_ns == disk_written
    assert agent.engine.staged_version() is None  # being tried: no longer waiting
    device.power_on()
    agent = make_agent(device)
    agent.cycle()
    beat = server.heartbeats[-1]
    assert (beat.image_version, beat.update_state, beat.staged_version) == (
        V2,
        UpdateState.COMMITTED,
        None,
    )
    assert kinds(server)[1:] == ["update-available", "trial-started", "update-committed"]


def _damage(device: SimDevice, slot: Slot) -> None:
    part = BootDisk.open(device.disk_path).partitions[f"system_{slot.value}"]
    with device.disk_path.open("r+b") as disk:
        disk.seek(part.offset + 1_000_000)
        disk.write(b"\xff" * 4096)


def test_a_staged_slot_damaged_after_staging_is_installed_again(device, server):
    agent = staged_agent(device, server)
    _damage(device, Slot.B)
    server.set_desired("2.0.0")
    agent.cycle()
    assert agent.engine.store.load().state is UpdateState.TRIAL_REBOOT
    started = [e for e in server.events if e["kind"] == "install-started"]
    assert len(started) == 1
    assert str(started[0]["message"]).startswith("the staged slot failed the pre-trial check: ")
    assert "install-failed" not in kinds(server)
    assert agent.engine.last_stats  # the slot writer ran again
    device.power_on()
    make_agent(device).cycle()
    assert server.heartbeats[-1].image_version == V2
    assert device.slot_sha256(Slot.B, ImageName.SYSTEM, SYSTEM_SIZE) == _sha256_v2()


def test_an_unreadable_record_is_set_aside_and_nothing_counts_as_staged(device, server):
    agent = staged_agent(device, server)
    device.roots.staged_file.write_text("{not json")
    assert agent.engine.staged_version() is None
    assert [p.name for p in device.roots.fleet.glob("staged.json.unreadable-*")]
    server.set_desired("2.0.0")
    agent.cycle()  # not trusted as staged: the usual install path (re-verifies the slot)
    assert agent.engine.store.load().state is UpdateState.TRIAL_REBOOT


def test_no_hint_or_an_older_one_leaves_the_slot_alone(device, server):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    server.set_desired("1.0.0", prestage="1.0.0")  # not newer than the running release
    agent.cycle()
    assert server.fetched_chunks() == 0 and agent.engine.staged_version() is None
    server.set_desired("1.0.0", prestage="2.0.0")
    agent.cycle()
    assert agent.engine.staged_version() == V2
    server.set_desired("1.0.0")  # the rollout was halted: the hint goes, the slot stays
    agent.cycle()
    assert agent.engine.staged_version() == V2
    assert server.heartbeats[-1].staged_version == V2
    assert device.booted() == (Slot.A, False)


@pytest.fixture
def repo3(repo_template: ReleaseRepo, tmp_path: Path) -> ReleaseRepo:
    repo = repo_template.copy(tmp_path / "repo3")
    v2 = v2_images()
    repo.publish(
        "3.0.0",
        {
            ImageName.BOOT: v2[ImageName.BOOT],
            ImageName.SYSTEM: patched(v2[ImageName.SYSTEM], 4_000_000, image_bytes(9, 30_000)),
        },
    )
    return repo


def test_a_newer_hint_supersedes_the_staged_release(tmp_path, repo3):
    server = FleetServer(repo3.path)
    try:
        device = v1_device(tmp_path / "device", repo3)
        agent = staged_agent(device, server)
        assert agent.engine.staged_version() == V2
        server.set_desired("1.0.0", prestage="3.0.0")  # a newer rollout's release
        agent.cycle()
        assert agent.engine.staged_version() == Version("3.0.0")
        assert agent.engine.store.load().slot_versions.get(Slot.B) == Version("3.0.0")
        fetched = server.fetched_chunks()
        server.set_desired("3.0.0")
        agent.cycle()
        assert agent.engine.store.load().state is UpdateState.TRIAL_REBOOT
        assert server.fetched_chunks() == fetched
    finally:
        server.close()


def test_an_install_due_comes_before_a_hint(device, server):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    server.set_desired("2.0.0", prestage="2.0.0")
    agent.cycle()
    assert agent.engine.store.load().state is UpdateState.TRIAL_REBOOT
    assert "install-started" in kinds(server)


def cut_staging(device: SimDevice, server: FleetServer) -> Agent:
    """An agent whose staging of 2.0.0 lost the network after three chunks (now back)."""
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    server.down_after_chunks = 3
    server.set_desired("1.0.0", prestage="2.0.0")
    agent.cycle()
    state = agent.engine.store.load()
    assert state.staging_from is UpdateState.IDLE and state.state is UpdateState.INSTALLING
    server.down, server.down_after_chunks = False, None
    return agent


def test_staging_cut_short_by_the_network_resumes_as_staging(device, server):
    cut_staging(device, server)
    restarted = make_agent(device)  # the agent restarted while staging
    restarted.cycle()
    assert restarted.engine.staged_version() == V2
    assert restarted.engine.store.load().state is UpdateState.IDLE
    assert device.booted() == (Slot.A, False)
    assert all(b.update_state is UpdateState.IDLE for b in server.heartbeats)
    assert "install-started" not in kinds(server)


def test_admitted_while_staging_the_staging_becomes_the_install(device, server):
    agent = cut_staging(device, server)
    # Admitted before the next cycle resumed the staging (what apply() does on a new desired
    # state when the agent has just started): the install carries on from where it stopped.
    assert agent.engine.start(V2, server.tuf_url) is EngineResult.REBOOTING
    agent.flush()
    assert kinds(server)[1:3] == ["update-available", "install-started"]


def test_a_staged_device_polls_as_often_as_the_hint_asks(device, server):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    server.down_after_chunks = 3  # hinted, but the staging cannot finish: the usual interval
    server.set_desired("1.0.0", prestage="2.0.0", poll_s=10)
    assert 30 <= agent.cycle() <= 120
    assert agent.engine.staged_version() is None
    server.down, server.down_after_chunks = False, None
    assert agent.cycle() == 10  # staged: admission is noticed within 10 s
    assert agent.cycle() == 10
    server.set_desired("1.0.0")  # the rollout stopped: back to the usual interval
    assert 30 <= agent.cycle() <= 120


def test_a_device_whose_last_install_failed_does_not_stage(device, server):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    store = agent.engine.store
    failed = store.load()
    failed.state, failed.last_failure = UpdateState.FAILED, "verity root hash mismatch"
    store.save(failed)
    server.set_desired("1.0.0", prestage="2.0.0")
    agent.cycle()
    assert server.fetched_chunks() == 0 and agent.engine.staged_version() is None
    assert store.load().state is UpdateState.FAILED  # still what the device reports
