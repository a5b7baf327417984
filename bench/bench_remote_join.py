"""Time from an admin's ``POST`` of a remote session to the device's WebSocket joining it
(ADR 0083): with the agent's long-poll between polls, beside the poll-only baseline, in the
same run.

Two ``overlord serve`` replicas on one PostgreSQL database, the default poll interval (60 s).
``--devices`` simulated devices (the real agent's ``run_forever`` in threads, enrolled on
replica a) each get one logs session opened on replica b, the openings spread evenly over
one poll interval so they fall at every phase of the devices' polls. Open-to-join is the
session's ``joined_at - opened_at`` as the Overlord recorded them. The baseline is the same
agents with their wait switched off (they learn of a session at their next poll, as before
ADR 0083). Then ``--held`` devices registered on replica a each hold a wait at once (from
this process, asyncio), and replica a's resident size is read from ``/proc`` before and while
they are held: what a held wait costs a replica. Needs ``FLEET_TEST_PG_URL``.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_remote_join.py [--devices 20] [--held 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import httpx

SOURCE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SOURCE))

from fleetcore.version import Version  # noqa: E402
from overlord import migrate  # noqa: E402
from overlord.auth.models import KeyRole  # noqa: E402
from overlord.db import make_engine  # noqa: E402
from simulator.device import SimulatedDevice  # noqa: E402
from simulator.releases import build_release  # noqa: E402
from simulator.site import scratch_database  # noqa: E402
from tests.overlord.conftest import create_token  # noqa: E402
from tests.overlord.servers import overlord_process, server_env  # noqa: E402
from tests.overlord.test_replicas import _register  # noqa: E402
from tests.overlord.tufrepo import make_repo  # noqa: E402
from updater.agent import Agent  # noqa: E402

V1 = Version("1.0.0")
POLL_INTERVAL_S = 60  # the Overlord's default


def start_agents(
    workdir: Path, url: str, base: str, count: int, *, wait: bool
) -> list[tuple[Agent, threading.Thread]]:
    """``count`` enrolled devices running the agent's loop against ``base``."""
    build = build_release(workdir, V1)
    root_json = next((workdir / "tuf").rglob("1.root.json")).read_bytes()
    running = []
    for number in range(count):
        device = SimulatedDevice(f"join-{number}", workdir / f"device-{number}")
        device.provision(
            build=build,
            version=str(V1),
            root_json=root_json,
            overlord_url=base,
            enrollment_token=create_token(url, KeyRole.ENROLLMENT),
        )
        device.power_on()
        agent = device.start_agent(base)
        agent.session_wait.wanted = wait
        thread = threading.Thread(
            target=agent.run_forever,
            kwargs={"watchdog_s": None, "lock": workdir / f"device-{number}.lock"},
        )
        thread.start()
        running.append((agent, thread))
    for agent, _thread in running:
        while agent.desired is None:  # enrolled and polled once
            time.sleep(0.1)
    return running


def open_to_join(url: str, base: str, agents: list[Agent], spread_s: float) -> list[float]:
    """One logs session per device, opened on ``base`` evenly over ``spread_s``; seconds from
    each opening to its join, as the Overlord recorded them."""
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    sessions = []
    gap = spread_s / len(agents)
    for agent in agents:
        device_id = agent.client.enrolled().device_id
        opened = httpx.post(
            f"{base}/api/v1/devices/{device_id}/remote-sessions",
            json={"kind": "logs"},
            headers=admin,
        )
        opened.raise_for_status()
        sessions.append(opened.json()["id"])
        time.sleep(gap)
    samples = []
    for session_id in sessions:
        where = f"{base}/api/v1/remote-sessions/{session_id}"
        while not (row := httpx.get(where, headers=admin).json())["joined_at"]:
            time.sleep(0.2)
        joined = datetime.fromisoformat(row["joined_at"])
        samples.append((joined - datetime.fromisoformat(row["opened_at"])).total_seconds())
        httpx.delete(where, headers=admin)
    return samples


def run(workdir: Path, url: str, a: str, b: str, devices: int, *, wait: bool) -> list[float]:
    running = start_agents(workdir, url, a, devices, wait=wait)
    try:
        return open_to_join(url, b, [agent for agent, _ in running], POLL_INTERVAL_S)
    finally:
        for agent, _thread in running:
            agent.stop()
        for _agent, thread in running:
            thread.join(60)


def rss_kib(base: str) -> int:
    """The resident size of the process listening on ``base``'s port."""
    port = base.rsplit(":", 1)[1]
    listening = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"pid=(\d+)", listening)
    assert match, listening
    status = Path(f"/proc/{match.group(1)}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def held_waits(url: str, base: str, count: int) -> tuple[int, int, float]:
    """Replica RSS (KiB) before and while ``count`` devices each hold a wait; the waits it
    reported holding."""
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    devices = [_register(base, enrollment, f"HELD{number:05d}") for number in range(count)]
    before = rss_kib(base)

    async def hold() -> tuple[int, float]:
        limits = httpx.Limits(max_connections=count + 10)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            waits = [
                asyncio.ensure_future(
                    client.get(
                        f"{base}/api/v1/devices/{device_id}/remote-wait?timeout_s=60",
                        headers=auth,
                    )
                )
                for device_id, auth in devices
            ]
            reported = 0.0
            while reported < count:
                await asyncio.sleep(1)
                metrics = (await client.get(f"{base}/metrics")).text
                reported = float(metrics.split("\nfleet_remote_waits ")[1].split()[0])
            during = rss_kib(base)
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            return during, reported

    during, reported = asyncio.run(hold())
    return before, during, reported


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{name}: p50 {statistics.median(ordered):.2f} s, p99 {p99:.2f} s, "
        f"max {ordered[-1]:.2f} s ({len(samples)} sessions)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--held", type=int, default=1000)
    args = parser.parse_args()
    results = {}
    held: tuple[int, int, float] = (0, 0, 0.0)
    for wait in (False, True):
        with ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            url = stack.enter_context(
                scratch_database(os.environ["FLEET_TEST_PG_URL"], "bench_remote_join")
            )
            engine = make_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
            env = server_env(
                url,
                make_repo(workdir / "tuf"),
                # --held enrols its devices from this one address.
                OVERLORD_ANONYMOUS_RATE_PER_S="1000",
                OVERLORD_ANONYMOUS_RATE_BURST="5000",
            )
            a = stack.enter_context(overlord_process(env, log=workdir / "a.log"))
            b = stack.enter_context(overlord_process(env, log=workdir / "b.log"))
            results[wait] = run(workdir, url, a, b, args.devices, wait=wait)
            if wait and args.held:
                held = held_waits(url, a, args.held)
    load = os.getloadavg()
    print(f"# {time.strftime('%Y-%m-%d')}, load average {load[0]:.2f}, 2 shared cores")
    print(f"# poll interval {POLL_INTERVAL_S} s; device on replica a, session opened on b")
    print(summary("baseline, poll only (the wait switched off)", results[False]))
    print(summary("long-poll between polls (ADR 0083)", results[True]))
    if args.held:
        before, during, reported = held
        print(
            f"replica a: {before:,} KiB RSS, {during:,} KiB holding {reported:.0f} waits "
            f"(+{(during - before) / max(reported, 1):.1f} KiB a wait)"
        )


if __name__ == "__main__":
    main()
