"""/data full: the daemon starts, saves its state and heartbeats; installs wait for space.

/data is a real filesystem here (a 16 MiB tmpfs mounted over the simulated device's /data)
filled to the last byte, as Docker or a role's logs would fill it, and the daemon is the real
``fleet-updater run`` on the device's Python against the test Overlord.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetcore.run import run
from fleetcore.wire import EventKind
from simulator.server import stop
from tests.updater.agents import setup_device
from tests.updater.device import SimDevice
from tests.updater.servers import FleetServer
from tests.updater.test_cli import cli
from updater.queue import EventQueue
from updater.space import RESERVE_BYTES, Reserve

ROOT = Path(__file__).resolve().parents[2]
DEVICE_PYTHON = ROOT / ".venv-device" / "bin" / "python"
# Bounds a wait for the daemon; it only ends a test that would otherwise hang, it measures
# nothing.
WAIT_BOUND_S = 120.0

pytestmark = pytest.mark.integration


@pytest.fixture
def small_data(device: SimDevice) -> Iterator[Path]:
    """The device's /data moved onto a 16 MiB tmpfs."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root: run scripts/test as root")
    data = device.roots.data
    saved = data.with_name("data-saved")
    shutil.copytree(data, saved, symlinks=True)
    run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(data)])
    try:
        shutil.copytree(saved, data, symlinks=True, dirs_exist_ok=True)
        yield data
    finally:
        run(["umount", "-l", str(data)])


def fill(folder: Path) -> Path:
    """Write until the filesystem refuses another byte."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for block in (1 << 16, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError as err:
                assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert shutil.disk_usage(folder).free < 4096
    return filler


def wait_for(what: str, done: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    started = time.monotonic()
    while not done():
        assert proc.poll() is None, f"the daemon exited ({proc.returncode}) waiting for {what}"
        assert time.monotonic() - started < WAIT_BOUND_S, f"no {what}"
        time.sleep(0.2)


def daemon(device: SimDevice, log: Path) -> subprocess.Popen[bytes]:
    python = DEVICE_PYTHON if DEVICE_PYTHON.exists() else Path(sys.executable)
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                str(python),
                "-c",
                "from updater.cli import main; raise SystemExit(main())",
                *cli(device, "run"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(ROOT)},
        )


def saved_state(device: SimDevice) -> dict[str, object]:
    try:
        return json.loads(device.roots.state_file.read_bytes())
    except (OSError, ValueError):
        return {}


def test_with_data_full_the_daemon_starts_saves_heartbeats_and_waits_to_stage(
    device: SimDevice, server: FleetServer, small_data: Path, tmp_path: Path
) -> None:
    setup_device(
        device,
        server,
        poll_min_s=1,
        poll_max_s=2,
        offline_backoff_max_s=4,
        request_timeout_s=5,
        transfer={"min_free_data_bytes": 1 << 20},
    )
    reserve = device.roots.reserve_file
    log = tmp_path / "daemon.log"
    proc = daemon(device, log)
    try:
        wait_for("first heartbeat", lambda: len(server.heartbeats) > 0, proc)
        assert reserve.stat().st_size == RESERVE_BYTES
    finally:
        stop(proc)
    filler = fill(small_data)

    proc = daemon(device, log)  # starts on a full /data
    try:
        beats = len(server.heartbeats)
        server.set_desired("2.0.0")
        wait_for("heartbeats on a full /data", lambda: len(server.heartbeats) >= beats + 3, proc)
        wait_for(
            "the reason the install waits",
            lambda: any(
                e["kind"] == EventKind.AGENT_ERROR and "needed to stage" in str(e["reason"])
                for e in server.events
            ),
            proc,
        )
        state = saved_state(device)
        assert (state["state"], state["target_version"]) == ("downloading", "2.0.0")
        assert not reserve.exists()  # released so that the state could be saved
        assert server.heartbeats[-1].free_data_bytes <= RESERVE_BYTES
        assert server.fetched_chunks() == 0

        filler.unlink()  # space is back: the reserve is taken again and the install goes on
        wait_for("the reserve", reserve.exists, proc)
        wait_for("the install", lambda: saved_state(device).get("state") == "trial-reboot", proc)
    finally:
        stop(proc)
    assert server.fetched_chunks() > 0
    assert "Traceback" not in log.read_text()


def test_a_full_queue_directory_keeps_events_in_memory_and_saves_them_later(
    small_data: Path,
) -> None:
    reserve = Reserve(small_data / "reserve")
    assert reserve.ensure()
    queue = EventQueue(small_data / "queue", max_items=100, reserve=reserve)
    queue.put(EventKind.ENROLLED)
    filler = fill(small_data)
    for number in range(20):
        queue.put(EventKind.INSTALL_PROGRESS, message=f"{number}" * 2000)
    assert len(queue) == 21  # nothing lost while the agent runs
    assert queue.dropped_total == 0
    assert len(EventQueue(small_data / "queue", max_items=100, min_free_bytes=0)) == 1
    assert not reserve.path.exists()  # released for the cursor

    filler.unlink()
    queue.put(EventKind.ROLLBACK)  # the whole journal is written again
    again = EventQueue(small_data / "queue", max_items=100)
    assert [e.seq for e in again.pending()] == list(range(1, 23))
