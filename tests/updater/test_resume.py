"""Interrupted installs resume where they stopped and never fetch a chunk twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from fleetcore.layout import Slot
from fleetcore.version import Version
from fleetcore.wire import UpdateState
from tests.updater.conftest import v2_images
from tests.updater.test_install import assert_slot_holds
from updater.engine import EngineResult

ROOT = Path(__file__).resolve().parents[2]


def override(device, **transfer):
    device.roots.data_config.parent.mkdir(parents=True, exist_ok=True)
    device.roots.data_config.write_text(yaml.safe_dump({"transfer": transfer}))


def unseed(device):
    for path in device.roots.slot_dir(Slot.A).iterdir():
        path.unlink()


def test_killed_at_many_byte_offsets_then_resumed(device, server):
    """kill -9 at eight points of one install; each run resumes, no chunk comes twice."""
    unseed(device)
    override(device, parallel_fetches=1, checkpoint_bytes=512 * 1024, min_free_data_bytes=0)
    engine = device.engine()
    state = engine.store.load()
    # Enter the install without running it: the first killed process does the work.
    state.state, state.target_version = UpdateState.DOWNLOADING, Version("2.0.0")
    state.target_slot, state.source = Slot.B, server.tuf_url
    engine.store.save(state)
    kills = 0
    for step in range(8):
        proc = subprocess.run(
            [sys.executable, "-m", "tests.updater.killer", str(device.base), str(700_001 + step)],
            cwd=ROOT,
            capture_output=True,
            check=False,
        )
        assert proc.returncode == -9, proc.stderr.decode()[-2000:]
        kills += 1
    assert engine.store.load().state is UpdateState.INSTALLING
    assert device.settle() == [EngineResult.REBOOTING, EngineResult.IDLE]
    assert kills == 8
    assert max(server.chunk_requests.values()) == 1
    assert_slot_holds(device, Slot.B, v2_images())


def test_overlord_down_during_install_resumes_later(device, server):
    unseed(device)
    override(
        device,
        parallel_fetches=4,
        checkpoint_bytes=256 * 1024,
        retries=1,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
        min_free_data_bytes=0,
    )
    server.down_after_chunks = 120
    engine = device.engine()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.WAITING
    assert engine.store.load().state is UpdateState.INSTALLING
    assert engine.resume() is EngineResult.WAITING  # still down: keeps waiting, state unchanged

    server.down, server.down_after_chunks = False, None
    assert device.engine().resume() is EngineResult.REBOOTING
    assert max(server.chunk_requests.values()) == 1
    assert_slot_holds(device, Slot.B, v2_images())
