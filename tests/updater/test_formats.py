"""Device files across an A/B fallback: release 0.1.0's readers on what this release writes.

0.1.0's readers (kept under fixtures/release-0.1.0, extracted from its tag) forbid unknown
keys, so this release writes format 1.0 exactly as 0.1.0 did; and this release's readers
ignore unknown fields and set aside only a newer major format.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fleetcore.layout import Slot
from fleetcore.version import Version
from fleetcore.wire import EventKind, UpdateState
from updater.queue import CURSOR, JOURNAL, EventQueue
from updater.state import ONLY_WHEN_SET, StateStore, UpdaterState

OLD = Path(__file__).parent / "fixtures" / "release-0.1.0"


# Names that moved since 0.1.0 (the files' format is under test, not the import paths).
_MOVED = {
    "from updater.errors import StateError": (
        "from updater.errors import UpdateStateError as StateError"
    ),
    "from fleetcore.wire import Slot, UpdateState": (
        "from fleetcore.layout import Slot\nfrom fleetcore.wire import UpdateState"
    ),
}


def old_module(name: str) -> ModuleType:
    """0.1.0's ``updater.<name>``; its imports resolve against the current tree."""
    source = (OLD / f"{name}.py.txt").read_text()
    for old, new in _MOVED.items():
        source = source.replace(old, new)
    spec = importlib.util.spec_from_loader(f"release_0_1_0_{name}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the module's annotations through it
    exec(compile(source, f"0.1.0/{name}.py", "exec"), module.__dict__)
    return module


def full_state(step: UpdateState) -> UpdaterState:
    return UpdaterState(
        state=step,
        target_version=Version("2.0.0"),
        target_slot=Slot.B,
        source="https://overlord.example/tuf",
        target_floor=Version("1.5.0"),
        slot_versions={Slot.A: Version("1.0.0"), Slot.B: Version("2.0.0")},
        version_floor=Version("1.0.0"),
        trial_attempts={"2.0.0": 1},
        bad_versions=[Version("1.9.0")],
        last_failure="health check failed",
        rollback_unreported=True,
        reboot_boot_id="boot-1",
        trial_boot_id="boot-2",
        trial_deadline=1_700_000_000.5,
    )


@pytest.mark.parametrize("step", list(UpdateState))
def test_release_0_1_0_reads_every_state_this_release_writes(tmp_path, step):
    old = old_module("state")
    path = tmp_path / "state.json"
    StateStore(path).save(full_state(step))
    loaded = old.StateStore(path).load()
    unset = set(ONLY_WHEN_SET)  # not written while unset: no field 0.1.0 refuses
    assert loaded.model_dump(mode="json") == full_state(step).model_dump(mode="json", exclude=unset)


def test_release_0_1_0_reads_every_save_of_a_real_update(device, server):
    old = old_module("state")
    seen: list[str] = []

    class Checking(StateStore):
        def after_save(self, state: UpdaterState) -> None:
            seen.append(old.StateStore(self.path).load().state.value)

    store = Checking(device.roots.state_file)
    device.engine(store=store).start(Version("2.0.0"), server.tuf_url)
    device.settle(lambda: device.engine(store=Checking(device.roots.state_file)))
    assert seen[-1] == "committed" and "trial" in seen


def test_release_0_1_0_reads_the_event_queue_this_release_writes(tmp_path):
    old = old_module("queue")
    queue = EventQueue(tmp_path, max_items=3)
    for n in range(5):
        queue.put(EventKind.INSTALL_PROGRESS, version=Version("2.0.0"), message=str(n))
    queue.ack(3)
    queue.put(EventKind.ROLLBACK, reason="trial failed")
    theirs = old.EventQueue(tmp_path, max_items=3)
    assert [e.model_dump(mode="json") for e in theirs._pending] == [
        e.model_dump(mode="json") for e in queue._pending
    ]
    assert theirs.cursor.model_dump() == queue.cursor.model_dump()
    assert theirs.pending()[0].kind is EventKind.TELEMETRY_DROPPED


def test_unknown_fields_are_ignored_and_a_newer_major_is_set_aside(tmp_path):
    queue = EventQueue(tmp_path, max_items=10)
    queue.put(EventKind.ENROLLED)
    event = json.loads((tmp_path / JOURNAL).read_bytes())
    event["added_later"] = 1
    (tmp_path / JOURNAL).write_text(json.dumps(event) + "\n")
    cursor = json.loads((tmp_path / CURSOR).read_bytes())
    (tmp_path / CURSOR).write_text(json.dumps({**cursor, "format": "1.7", "added_later": 2}))
    again = EventQueue(tmp_path, max_items=10)
    assert [e.kind for e in again.pending()] == [EventKind.ENROLLED]
    assert again.put(EventKind.ROLLBACK).seq == 2

    (tmp_path / JOURNAL).write_text('{"format": "2.0"}\n' + json.dumps(event) + "\n")
    (tmp_path / CURSOR).write_text(json.dumps({"format": "2.0", "next_seq": 9}))
    fresh = EventQueue(tmp_path, max_items=10)
    assert len(fresh) == 0 and fresh.cursor.next_seq == 1
    assert len(list(tmp_path.glob("*.unreadable-*"))) == 2


def test_install_progress_is_read_across_versions(tmp_path):
    from fleetcore.release import ImageName
    from updater.install import Progress, ProgressFile

    progress = ProgressFile(tmp_path / "progress.json")
    saved = Progress(version=Version("2.0.0"), slot=Slot.B, image=ImageName.SYSTEM, next_chunk=7)
    progress.save(saved)
    doc = json.loads(progress.path.read_bytes())
    assert "format" not in doc  # format 1.0, as 0.1.0 wrote it
    progress.path.write_text(json.dumps({**doc, "format": "1.4", "added_later": True}))
    assert progress.load(Version("2.0.0"), Slot.B) == (saved, True)
    progress.path.write_text(json.dumps({**doc, "format": "2.0"}))
    fresh, resumed = progress.load(Version("2.0.0"), Slot.B)
    assert not resumed and fresh.next_chunk == 0
