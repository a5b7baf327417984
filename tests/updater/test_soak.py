"""Soak: the real ``fleet-updater run`` against a hostile chunk store and Overlord.

One attack at a time (``tests/updater/hostile.py``), each for a phase of the soak, while the
Overlord keeps asking for 2.0.0 so the agent keeps trying to install it through the hostile
TUF metadata and chunk store. Through every phase the agent process must stay alive (no
crash, no restart), keep sending heartbeats, and stay under 64 MiB of peak RSS (VmHWM, the
kernel's high-water mark of the process). ``FLEET_SOAK_PHASE_S`` sets the length of a phase
(default 8 s: seventeen attacks after an honest phase, about three minutes with the waits for
heartbeats). Transfers time out after 2 s, so the TUF fetcher's deadline (four timeouts) cuts
a trickling metadata file within a phase.

The agent runs on the device's own interpreter and packages (``.venv-device``: Debian
bookworm's Python 3.11.2 with only ``[device,build]``), which is what the 64 MiB is about; the
development venv carries packages a device does not (httpx alone costs 5 MiB more there,
because it imports its CLI when rich and click are installed).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.server import stop
from tests.procstat import vm_hwm_kib
from tests.updater.agents import setup_device
from tests.updater.device import SimDevice
from tests.updater.hostile import ATTACKS, HostileServer
from tests.updater.servers import FleetServer
from tests.updater.test_cli import cli

ROOT = Path(__file__).resolve().parents[2]
DEVICE_PYTHON = ROOT / ".venv-device" / "bin" / "python"
PHASE_S = float(os.environ.get("FLEET_SOAK_PHASE_S", "8"))
RSS_LIMIT_KIB = 64 * 1024
# An upper bound for a heartbeat to arrive in a phase, long enough for every timeout and
# backoff the agent may be sitting in; it only ends the test, it measures nothing.
HEARTBEAT_BOUND_S = 120.0


@pytest.fixture
def hostile(server: FleetServer) -> Iterator[HostileServer]:
    front = HostileServer(server.url)
    yield front
    front.close()


@pytest.mark.integration
def test_agent_survives_a_hostile_chunk_store_and_overlord(
    device: SimDevice, server: FleetServer, hostile: HostileServer, tmp_path: Path
) -> None:
    setup_device(
        device,
        hostile,  # the device sees only the hostile front, for the Overlord and the chunks
        poll_min_s=1,
        poll_max_s=2,
        offline_backoff_max_s=4,
        request_timeout_s=5,
        transfer={"timeout_s": 2},
    )
    if not DEVICE_PYTHON.exists():
        pytest.fail(f"{DEVICE_PYTHON} missing: scripts/test creates it (ensure_device_venv)")
    log = (tmp_path / "agent.log").open("wb")
    proc = subprocess.Popen(
        [
            str(DEVICE_PYTHON),
            "-c",
            "from updater.cli import main; raise SystemExit(main())",
            *cli(device, "run"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(ROOT)},
    )
    peak = 0
    phases: list[str] = []
    try:
        for number, attack in enumerate((None, *ATTACKS)):
            hostile.attack = attack
            # Honest and idle first (enrolment); then 2.0.0 is wanted, and every install
            # attempt goes through the hostile chunk store. A new desired state each phase
            # (the poll interval alternates) lets the agent retry the version that failed.
            server.set_desired(None if attack is None else "2.0.0")
            if attack is not None:
                with server.lock:
                    server.desired["poll_interval_s"] = 5 + number % 2
            before = hostile.count("heartbeat")
            fetched = hostile.count("tuf-metadata")
            started = time.monotonic()
            while time.monotonic() - started < PHASE_S or hostile.count("heartbeat") == before:
                assert proc.poll() is None, f"the agent exited during {attack}: {proc.returncode}"
                assert time.monotonic() - started < HEARTBEAT_BOUND_S, (
                    f"no heartbeat during {attack}"
                )
                peak = max(peak, vm_hwm_kib(proc.pid))
                time.sleep(0.5)
            if attack is not None and attack[0] in {"timestamp", "targets", "metadata"}:
                assert hostile.count("tuf-metadata") > fetched, f"no metadata asked in {attack}"
            name = "/".join(attack) if attack else "honest"
            phases.append(f"{name} {peak / 1024:.1f} ({time.monotonic() - started:.0f} s)")
        assert peak < RSS_LIMIT_KIB, f"peak RSS {peak} KiB; after each phase: {phases}"
        assert hostile.count("chunk") >= 7, "the agent did not retry through every chunk attack"
    finally:
        stop(proc)
        log.close()
    print("soak: peak RSS after each phase in MiB (its length):", ", ".join(phases))
    print(
        f"soak: peak RSS {peak / 1024:.1f} MiB, {hostile.count('heartbeat')} heartbeats, "
        f"{hostile.count('chunk')} chunk requests"
    )
