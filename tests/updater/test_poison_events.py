"""A queued event the Overlord refuses for good never blocks the queue; outages keep events.

The test Overlord answers 422 (as FastAPI does for a body it does not validate) to any batch
that holds a "poison" event: one a newer Overlord no longer takes, or one an older release
queued.
"""

from __future__ import annotations

import pytest

from fleetcore.wire import EventBatch, EventKind
from tests.updater.agents import make_agent, setup_device
from updater.agent import MAX_REFUSALS_PER_FLUSH
from updater.queue import EventQueue


def poisoned(batch: EventBatch) -> int | None:
    return 422 if any("poison" in e.message for e in batch.events) else None


def queue_offline(agent, server, messages: list[str]) -> None:
    server.down = True
    for message in messages:
        agent.events.put(EventKind.INSTALL_PROGRESS, message=message)
    server.down = False


@pytest.mark.parametrize("where", [0, 3, 9])
def test_a_refused_event_is_dropped_counted_and_the_rest_delivered(device, server, where):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    messages = [f"event {n}" for n in range(10)]
    messages[where] = "poison"
    queue_offline(agent, server, messages)
    server.judge_events = poisoned
    beats = len(server.heartbeats)

    agent.cycle()

    assert len(server.heartbeats) == beats + 1
    received = [e["message"] for e in server.events if e["kind"] == "install-progress"]
    assert received == [m for m in messages if m != "poison"]
    notices = [e for e in server.events if e["kind"] == "telemetry-dropped"]
    assert [n["data"]["dropped"] for n in notices] == [1]
    assert server.heartbeats[-1].dropped_events == 1
    seqs = [e["seq"] for e in server.events]
    assert seqs == sorted(seqs)
    assert len(EventQueue(device.roots.queue_dir, max_items=100)) == 0


@pytest.mark.parametrize("status", [500, 503, 401, 403, 404])
def test_events_the_overlord_cannot_take_now_stay_queued(device, server, status):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    queue_offline(agent, server, [f"event {n}" for n in range(5)])
    server.judge_events = lambda batch: status
    agent.cycle()
    assert len(agent.events) == 5
    assert agent.events.dropped_total == 0
    server.judge_events = None
    agent.cycle()
    assert [e["message"] for e in server.events[-5:]] == [f"event {n}" for n in range(5)]


def test_an_overlord_that_refuses_everything_costs_bounded_requests_and_drains(device, server):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    queue_offline(agent, server, [f"poison {n}" for n in range(40)])
    server.judge_events = poisoned
    beats, batches = len(server.heartbeats), len(server.event_batches)
    agent.cycle()
    assert len(server.heartbeats) == beats + 1
    refused = [b for b in server.event_batches[batches:] if b[1] == 422]
    # Two flushes a cycle, each ending at the refusal after its last allowed one.
    assert len(refused) <= 2 * (MAX_REFUSALS_PER_FLUSH + 1)
    for _ in range(10):
        agent.cycle()
    assert len(agent.events) == 0
    assert agent.events.dropped_total == 40
    assert server.heartbeats[-1].dropped_events == 40
