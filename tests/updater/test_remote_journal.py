"""The device's journal tail (ADR 0074): the command it runs, the fields it keeps, hostile
lines skipped and counted, a bounded buffer, the child stopped on close; and the device's
own veto. ``journalctl`` is the fake in ``fake_journalctl.py`` put first on PATH, since the
real one needs systemd's journal."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.firstboot import RemoteAccess, dump_firstboot, load_firstboot
from updater.config import firstboot_layer
from updater.remote.journal import (
    MAX_LINE_BYTES,
    Batch,
    JournalTail,
    TailRequest,
)
from updater.remote.policy import refusal

FIXTURES = Path(__file__).parent / "fixtures" / "journal"
FAKE = Path(__file__).parent / "fake_journalctl.py"


@pytest.fixture
def fake_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``journalctl`` on PATH; returns where it records its arguments and pid."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "journalctl"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    record = tmp_path / "args.json"
    monkeypatch.setenv("FAKE_JOURNAL_ARGS", str(record))
    monkeypatch.setenv("FAKE_JOURNAL_FILE", str(FIXTURES / "good.jsonl"))
    yield record


def _collect(tail: JournalTail, entries: int) -> Batch:
    """Reads until ``entries`` have come or the tail has finished (bounded by reads)."""
    total = Batch()
    for _ in range(100):
        batch = tail.read(timeout_s=5)
        total.entries += batch.entries
        total.dropped += batch.dropped
        total.finished = batch.finished
        if batch.finished or len(total.entries) >= entries:
            break
    return total


def test_the_command_names_the_filters_as_options():
    assert TailRequest(unit="nginx.service", priority="err", lines=10).command() == [
        "journalctl",
        "--follow",
        "--output=json",
        "--lines=10",
        "--unit=nginx.service",
        "--priority=err",
    ]
    with pytest.raises(ValueError, match="unknown journal priority 'loud'"):
        TailRequest(priority="loud").command()


def test_a_tail_keeps_the_operators_fields_and_stops_journalctl_on_close(fake_journal: Path):
    with JournalTail(TailRequest(unit="nginx.service", priority="err", lines=10)) as tail:
        batch = _collect(tail, 3)
        assert not batch.finished  # --follow: journalctl keeps running
    recorded = json.loads(fake_journal.read_text())
    assert recorded["argv"] == [
        "--follow",
        "--output=json",
        "--lines=10",
        "--unit=nginx.service",
        "--priority=err",
    ]
    with pytest.raises(ProcessLookupError):
        os.kill(recorded["pid"], 0)
    assert batch.dropped == 0
    first, second, third = batch.entries
    assert first == {
        "__REALTIME_TIMESTAMP": "1764849600000000",
        "PRIORITY": "6",
        "_SYSTEMD_UNIT": "nginx.service",
        "SYSLOG_IDENTIFIER": "nginx",
        "_PID": "812",
        "MESSAGE": "GET /health 200",
    }
    assert second["MESSAGE"] == "overlord unreachable: connection refused"
    assert third["MESSAGE"] == "cam\ufffd!"  # a non-UTF-8 message, as journalctl's byte array


def test_lines_that_are_not_journal_json_are_skipped_and_counted(
    fake_journal: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_JOURNAL_FILE", str(FIXTURES / "bad.jsonl"))
    monkeypatch.setenv("FAKE_JOURNAL_EXIT", "1")
    with JournalTail(TailRequest()) as tail:
        batch = _collect(tail, 99)
    assert batch.finished
    assert batch.dropped == 3
    # Fields of the wrong type are left out; the entry itself is kept.
    assert batch.entries == [{"MESSAGE": ""}, {"MESSAGE": "after the bad ones"}]


def test_an_overlong_line_is_skipped_whole_and_counted_once(
    fake_journal: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_JOURNAL_BIG", str(3 * MAX_LINE_BYTES))
    with JournalTail(TailRequest()) as tail:
        batch = _collect(tail, 3)
    assert batch.dropped == 1
    assert [e["_PID"] for e in batch.entries[:2]] == ["812", "400"]


def test_a_slow_reader_gets_the_newest_entries_and_the_count_of_the_dropped(
    fake_journal: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_JOURNAL_REPEAT", "200")
    monkeypatch.setenv("FAKE_JOURNAL_EXIT", "1")
    sizes = []
    total = Batch()
    with JournalTail(TailRequest(), buffer_entries=10) as tail:
        for _ in range(1000):
            batch = tail.read(timeout_s=5)
            sizes.append(len(batch.entries))
            total.entries += batch.entries
            total.dropped += batch.dropped
            if batch.finished:
                break
    assert batch.finished
    assert max(sizes) <= 10
    assert len(total.entries) + total.dropped == 600
    assert total.entries[-1]["_SYSTEMD_UNIT"] == "camera.service"


def test_the_device_veto_decides_what_this_agent_serves():
    default = RemoteAccess()
    assert refusal("logs", default) is None
    assert refusal("shell", default) == (
        "this device's fleet.yaml forbids shell sessions (remote.shell: false)"
    )
    allowed = RemoteAccess(shell=True, forward=True)
    assert refusal("shell", allowed) is None
    assert refusal("forward", allowed) is None
    assert refusal("forward", default) == (
        "this device's fleet.yaml forbids forward sessions (remote.forward: false)"
    )
    assert refusal("logs", RemoteAccess(logs=False)) == (
        "this device's fleet.yaml forbids logs sessions (remote.logs: false)"
    )
    assert refusal("telnet", allowed) == "unknown remote session kind 'telnet'"


def test_fleet_yaml_carries_the_veto():
    first = load_firstboot(
        b"overlord_url: https://o.example\nhostname: pi\nremote:\n  logs: false\n"
    )
    assert first.remote == RemoteAccess(logs=False)
    # Only what fleet.yaml sets is layered over updater.yaml.
    assert firstboot_layer(first)["remote"] == {"logs": False}
    bare = load_firstboot(b"overlord_url: https://o.example\nhostname: pi\n")
    assert "remote" not in firstboot_layer(bare)
    assert b"remote" not in dump_firstboot(bare.without_secrets())
    assert load_firstboot(dump_firstboot(first.without_secrets())).remote == first.remote
