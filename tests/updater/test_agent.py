"""The agent against a real HTTP Overlord: enrolment, ETag polling, reports, offline queue."""

from __future__ import annotations

import pytest

from fleetcore.layout import Slot
from fleetcore.version import Version
from fleetcore.wire import EventKind, UpdateState
from tests.updater.agents import make_agent, setup_device
from updater.agent import REENROL_AFTER_REFUSED_CYCLES
from updater.engine import EngineResult
from updater.overlord import Identity, OverlordRejected
from updater.queue import EventQueue


def kinds(server):
    return [e["kind"] for e in server.events]


def test_enrol_poll_update_and_report(device, server):
    setup_device(device, server)
    agent = make_agent(device)
    wait = agent.cycle()
    assert 30 <= wait <= 120
    assert server.devices == {"dev-1": "token-dev-1"}
    assert device.roots.identity_file.stat().st_mode & 0o777 == 0o600
    assert "enrol-me" not in device.roots.fleet_yaml.read_text()  # secret left the FAT
    assert kinds(server) == ["enrolled"]
    beat = server.heartbeats[-1]
    assert (beat.image_version, beat.booted_slot, beat.committed_slot) == (
        Version("1.0.0"),
        Slot.A,
        Slot.A,
    )

    agent.cycle()  # nothing changed: the desired state answers 304
    assert server.requests.count("/api/v1/devices/dev-1/desired-state") == 2

    server.set_desired("2.0.0")
    agent.cycle()
    assert agent.engine.store.load().state is UpdateState.TRIAL_REBOOT
    device.power_on()
    agent = make_agent(device)  # a new process after the reboot, same identity on /data
    agent.cycle()
    assert server.devices == {"dev-1": "token-dev-1"}
    beat = server.heartbeats[-1]
    assert beat.image_version == Version("2.0.0")
    assert (beat.booted_slot, beat.committed_slot) == (Slot.B, Slot.B)
    assert beat.update_state is UpdateState.COMMITTED
    assert "update-committed" in kinds(server)
    seqs = [e["seq"] for e in server.events]
    assert seqs == sorted(seqs)


def test_offline_queue_is_bounded_and_flushed_in_order(device, server):
    setup_device(device, server, queue_max_items=5)
    agent = make_agent(device)
    agent.cycle()
    server.down = True
    waits = [agent.cycle() for _ in range(3)]
    assert waits[0] < waits[2] and waits[2] <= 240  # backs off while the Overlord is down
    for n in range(8):
        agent.events.put(EventKind.INSTALL_PROGRESS, message=str(n))
    server.down = False
    agent.cycle()
    received = server.events
    assert received[1]["kind"] == "telemetry-dropped"
    assert received[1]["data"]["dropped"] == 3
    assert [e["message"] for e in received[2:]] == ["3", "4", "5", "6", "7"]
    assert server.heartbeats[-1].dropped_events == 3
    assert len(EventQueue(device.roots.queue_dir, max_items=5)) == 0


def test_device_keeps_its_slot_while_the_overlord_is_down(device, server):
    setup_device(device, server)
    server.down = True
    agent = make_agent(device)
    agent.cycle()
    assert agent.engine.resume() is EngineResult.IDLE
    assert device.booted() == (Slot.A, False)


def test_desired_downgrade_is_refused_once_and_reported(device, server):
    setup_device(device, server)
    agent = make_agent(device)
    server.set_desired("0.5.0")
    agent.cycle()
    agent.cycle()
    failures = [e for e in server.events if e["kind"] == "install-failed"]
    assert len(failures) == 1
    assert "lower than the installed 1.0.0" in failures[0]["reason"]
    assert server.fetched_chunks() == 0
    assert agent.engine.store.load().state is UpdateState.IDLE


def test_heartbeat_names_the_node_exporter_for_service_discovery(device, server):
    setup_device(device, server, node_exporter="10.8.0.5:9100")
    make_agent(device).cycle()
    assert server.heartbeats[-1].node_exporter == "10.8.0.5:9100"


def test_a_named_remote_session_makes_the_agent_poll_fast_and_join_in_a_thread(device, server):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    with server.lock:
        server.desired = {"remote": {"session": "r" * 22, "kind": "logs", "poll_s": 2}}
    assert agent.cycle() == 2.0  # the cycle does not wait for the session
    assert agent.remote.serving or "/api/v1/devices/dev-1/remote/" + "r" * 22 in server.requests
    with server.lock:
        server.desired = {}
    assert 30 <= agent.cycle() <= 120
    assert not agent.remote.serving


def test_a_refused_credential_is_dropped_after_two_cycles_and_the_agent_enrols_again(
    device, server
):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    assert len(server.registrations) == 1
    server.devices["dev-1"] = "rotated"  # what a rotation does: the credential is refused (401)

    for _ in range(REENROL_AFTER_REFUSED_CYCLES):
        with pytest.raises(OverlordRejected) as refused:
            agent.cycle()
        assert refused.value.status == 401
        assert len(server.registrations) == 1  # the old credential kept until replaced
        assert Identity.load(device.roots.identity_file) == Identity("dev-1", "token-dev-1")

    agent.cycle()

    assert len(server.registrations) == 2
    assert server.registrations[-1].enrollment_token == "enrol-me"  # kept on /data
    assert Identity.load(device.roots.identity_file) == Identity("dev-2", "token-dev-2")
    assert server.heartbeats[-1].image_version == Version("1.0.0")


def test_one_refused_cycle_alone_keeps_the_credential(device, server):
    """A clock far off costs one 401; the next cycle, signed on the Overlord's clock, passes."""
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    token = server.devices.pop("dev-1")
    with pytest.raises(OverlordRejected):
        agent.cycle()
    server.devices["dev-1"] = token

    agent.cycle()
    del server.devices["dev-1"]
    with pytest.raises(OverlordRejected):
        agent.cycle()  # the count started again

    assert len(server.registrations) == 1
    assert agent.client.identity == Identity("dev-1", "token-dev-1")
