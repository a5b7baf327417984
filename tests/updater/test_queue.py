from __future__ import annotations

from fleetcore.wire import EventKind
from updater.queue import JOURNAL, EventQueue


def test_events_survive_a_restart_in_order(tmp_path):
    queue = EventQueue(tmp_path, max_items=10)
    for n in range(3):
        queue.put(EventKind.INSTALL_PROGRESS, message=str(n))
    again = EventQueue(tmp_path, max_items=10)
    assert [e.message for e in again.pending()] == ["0", "1", "2"]
    assert [e.seq for e in again.pending()] == [1, 2, 3]
    again.ack(2)
    assert [e.seq for e in EventQueue(tmp_path, max_items=10).pending()] == [3]
    assert EventQueue(tmp_path, max_items=10).put(EventKind.ROLLBACK).seq == 4


def test_overflow_drops_the_oldest_and_reports_it(tmp_path):
    queue = EventQueue(tmp_path, max_items=5)
    for n in range(8):
        queue.put(EventKind.INSTALL_PROGRESS, message=str(n))
    assert queue.dropped_total == 3
    batch = queue.pending()
    assert batch[0].kind is EventKind.TELEMETRY_DROPPED
    assert batch[0].data["dropped"] == 3
    assert [e.message for e in batch[1:]] == ["3", "4", "5", "6", "7"]
    seqs = [e.seq for e in batch]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert queue.pending()[0].kind is EventKind.TELEMETRY_DROPPED  # reported once
    queue.ack(batch[-1].seq)
    assert len(queue) == 0 and queue.dropped_total == 3


def test_torn_last_line_is_skipped(tmp_path):
    queue = EventQueue(tmp_path, max_items=10)
    queue.put(EventKind.ENROLLED)
    with (tmp_path / JOURNAL).open("ab") as handle:
        handle.write(b'{"seq": 2, "time": "2026-')  # power cut mid-append
    again = EventQueue(tmp_path, max_items=10)
    assert again.dropped_total == 1  # the torn event is lost, and said to be
    assert [e.kind for e in again.pending()] == [EventKind.TELEMETRY_DROPPED, EventKind.ENROLLED]
    assert again.put(EventKind.ROLLBACK).seq == 2
    reread = EventQueue(tmp_path, max_items=10).pending()
    assert [e.seq for e in reread if e.kind is not EventKind.TELEMETRY_DROPPED] == [1, 2]


def test_an_event_this_release_cannot_read_is_skipped_and_counted(tmp_path):
    queue = EventQueue(tmp_path, max_items=10)
    queue.put(EventKind.ENROLLED)
    with (tmp_path / JOURNAL).open("ab") as handle:  # queued by another release
        handle.write(b'{"seq": 2, "time": "2026-01-01T00:00:00Z", "kind": "teleported"}\n')
    queue = EventQueue(tmp_path, max_items=10)
    queue.put(EventKind.ROLLBACK)
    assert queue.dropped_total == 1
    pending = queue.pending()
    assert [e.kind for e in pending] == [
        EventKind.TELEMETRY_DROPPED,
        EventKind.ENROLLED,
        EventKind.ROLLBACK,
    ]
    assert [e.seq for e in pending] == [0, 1, 3]
