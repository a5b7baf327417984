"""Log-tail throughput of the remote-session relay between replicas (ADR 0074): journal-sized
frames (about 250 bytes) published through PostgreSQL ``NOTIFY`` by one :class:`PgRelay` and
reassembled by another's listener, against the in-process mailbox (one replica) in the same
run. Needs ``FLEET_TEST_PG_URL`` (a PostgreSQL server; a scratch database is made).

    PYTHONPATH=$PWD .venv/bin/python bench/bench_remote_relay.py [--frames 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from overlord.db import make_engine
from overlord.remote.pgrelay import PgRelay, Relayed
from overlord.remote.relay import Mailbox
from simulator.site import scratch_database

LINE = json.dumps(
    {
        "__REALTIME_TIMESTAMP": "1764849600000000",
        "PRIORITY": "6",
        "_SYSTEMD_UNIT": "nginx.service",
        "SYSLOG_IDENTIFIER": "nginx",
        "_PID": "812",
        "MESSAGE": "GET /health 200 " + "x" * 120,
    }
).encode()


async def across(url: str, frames: int) -> float:
    """Frames a second from publish to reassembled delivery through NOTIFY."""
    engine = make_engine(url)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    got = [0]

    def deliver(_frame: Relayed) -> None:
        got[0] += 1
        if got[0] == frames:
            done.set()

    listener = PgRelay(engine, loop, deliver)
    listener.start()
    publisher = PgRelay(engine, loop, lambda _frame: None)
    await asyncio.sleep(1.0)  # the listener's LISTEN is in place
    started = time.perf_counter()
    for _ in range(frames):
        await asyncio.to_thread(publisher.publish, "benchsession0000", "operator", "b", LINE)
    await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - started
    listener.stop()
    engine.dispose()
    return frames / elapsed


async def in_process(frames: int) -> float:
    box = Mailbox(lossy=False)

    async def reader() -> None:
        for _ in range(frames):
            await box.take()

    started = time.perf_counter()
    task = asyncio.create_task(reader())
    for _ in range(frames):
        await box.put(LINE)
    await task
    return frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with scratch_database(os.environ["FLEET_TEST_PG_URL"], "bench_remote_relay") as url:
        relayed = [asyncio.run(across(url, args.frames)) for _ in range(args.repeats)]
    local = [asyncio.run(in_process(args.frames)) for _ in range(args.repeats)]
    cross, base = statistics.median(relayed), statistics.median(local)
    print(f"frame size: {len(LINE)} bytes, {args.frames} frames, median of {args.repeats}")
    print(f"across replicas (NOTIFY): {cross:,.0f} lines/s ({cross * len(LINE) / 1024:,.0f} KiB/s)")
    print(f"baseline, one replica (in-process mailbox): {base:,.0f} lines/s")
    print(f"ratio: {base / cross:,.1f}x")


if __name__ == "__main__":
    main()
