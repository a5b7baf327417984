"""Overlord throughput on PostgreSQL with 2 uvicorn workers, each figure beside a baseline.

    FLEET_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:55432/postgres \\
        .venv/bin/python bench/bench_overlord.py [--seconds 5] [--rounds 3]

Scenarios (targets from the Overlord issue):
- heartbeat ingestion: POST /api/v1/devices/{id}/heartbeat, >= 2,000/s at p99 <= 100 ms;
- desired-state polls answered 304: GET .../desired-state with If-None-Match, >= 5,000/s.

The baseline is a bare FastAPI app on the same uvicorn settings (2 workers) whose endpoints
return 204 and 304 without any work, measured by the same load generator in the same run: the
ratio says how much of the ceiling on this machine the Overlord reaches. All load stays on
loopback. Devices are enrolled directly in the database; the per-device rate limit is lifted
because the benchmark compresses a fleet's minutes into seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from fastapi import FastAPI, Response
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from overlord import migrate  # noqa: E402
from overlord.auth import service as auth_service  # noqa: E402
from overlord.auth.models import KeyRole  # noqa: E402
from overlord.db import make_engine, make_sessionmaker, unit_of_work  # noqa: E402
from overlord.devices.models import Device  # noqa: E402
from tests.overlord.conftest import heartbeat  # noqa: E402
from tests.overlord.servers import free_port, overlord_process  # noqa: E402
from tests.overlord.tufrepo import make_repo  # noqa: E402

DEVICES = 1000
CONCURRENCY = 32

baseline_app = FastAPI()


@baseline_app.post("/api/v1/devices/{device_id}/heartbeat", status_code=204)
def _baseline_heartbeat(device_id: str) -> Response:
    return Response(status_code=204)


@baseline_app.get("/api/v1/devices/{device_id}/desired-state")
def _baseline_desired(device_id: str) -> Response:
    return Response(status_code=304, headers={"ETag": '"x"'})


# A minimal keep-alive HTTP/1.1 client: httpx would make the client, not the server, the limit.
async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    port: int,
    requests: list[bytes],
    stop_at: float,
    latencies: list[float],
    statuses: dict[int, int],
    offset: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < stop_at:
            request = requests[i % len(requests)]
            i += 1
            start = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _load(
    port: int, requests: list[bytes], seconds: float
) -> tuple[float, float, float, dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    step = max(1, len(requests) // CONCURRENCY)
    await asyncio.gather(
        *(
            _worker(port, requests, stop_at, latencies, statuses, n * step)
            for n in range(CONCURRENCY)
        )
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(len(latencies) * 0.99)]
    return len(latencies) / elapsed, p50, p99, statuses


def _measure(port: int, requests: list[bytes], seconds: float, rounds: int) -> dict[str, float]:
    asyncio.run(
        _load(port, requests, 1.0)
    )  # warm-up: connections, caches, JIT-free but lazy imports
    results = [asyncio.run(_load(port, requests, seconds)) for _ in range(rounds)]
    bad = {s: n for r in results for s, n in r[3].items() if s not in {204, 304}}
    if bad:
        raise SystemExit(f"unexpected statuses during the run: {bad}")
    return {
        "rps": statistics.median(r[0] for r in results),
        "p50_ms": 1000 * statistics.median(r[1] for r in results),
        "p99_ms": 1000 * statistics.median(r[2] for r in results),
    }


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _enroll(url: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    devices = []
    with unit_of_work(make_sessionmaker(engine)) as session:
        for i in range(DEVICES):
            device = Device(
                id=f"dev-bench{i:05d}",
                hostname=f"bench-{i}",
                hardware="pi4",
                image_version="1.0.0",
                booted_slot="a",
            )
            session.add(device)
            session.flush()
            _key, token = auth_service.create_key(session, role=KeyRole.DEVICE, device_id=device.id)
            devices.append((device.id, token))
    engine.dispose()
    return devices


def _etags(base: str, devices: list[tuple[str, str]]) -> list[str]:
    import httpx

    with httpx.Client() as client:
        return [
            client.get(
                f"{base}/api/v1/devices/{d}/desired-state", headers={"Authorization": f"Bearer {t}"}
            ).headers["etag"]
            for d, t in devices
        ]


def _baseline(
    port: int, fn: Callable[[], dict[str, dict[str, float]]]
) -> dict[str, dict[str, float]]:
    import subprocess

    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench_overlord:baseline_app",
        "--app-dir",
        str(Path(__file__).parent),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(argv, env=os.environ | {"PYTHONPATH": str(REPO_ROOT)})
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{port}/api/v1/devices/x/heartbeat")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return fn()
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pg_url = os.environ.get("FLEET_TEST_PG_URL")
    if not pg_url:
        raise SystemExit("set FLEET_TEST_PG_URL to a PostgreSQL server URL")
    name = f"overlord_bench_{uuid.uuid4().hex[:8]}"
    admin_url = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(make_engine(url))
        devices = _enroll(url)
        with tempfile.TemporaryDirectory() as tmp:
            repo = make_repo(Path(tmp) / "tuf")
            env = {
                "OVERLORD_DATABASE_URL": url,
                "OVERLORD_REPO_DIR": str(repo.path),
                "OVERLORD_KEYS_DIR": str(repo.keydir),
                "OVERLORD_DEVICE_RATE_PER_S": "1000000",
                "OVERLORD_DEVICE_RATE_BURST": "1000000",
                "PYTHONPATH": str(REPO_ROOT),
            }
            body = json.dumps(heartbeat()).encode()
            beats = [
                _request(
                    "POST", f"/api/v1/devices/{d}/heartbeat", {"Authorization": f"Bearer {t}"}, body
                )
                for d, t in devices
            ]
            with overlord_process(env, workers=2) as base:
                port = int(base.rsplit(":", 1)[1])
                etags = _etags(base, devices)
                polls = [
                    _request(
                        "GET",
                        f"/api/v1/devices/{d}/desired-state",
                        {"Authorization": f"Bearer {t}", "If-None-Match": e},
                    )
                    for (d, t), e in zip(devices, etags, strict=True)
                ]
                overlord = {
                    "heartbeat": _measure(port, beats, args.seconds, args.rounds),
                    "desired-state 304": _measure(port, polls, args.seconds, args.rounds),
                }
            base_port = free_port()
            baseline = _baseline(
                base_port,
                lambda: {
                    "heartbeat": _measure(base_port, beats, args.seconds, args.rounds),
                    "desired-state 304": _measure(base_port, polls, args.seconds, args.rounds),
                },
            )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    targets = {"heartbeat": 2000, "desired-state 304": 5000}
    print(
        f"Overlord on PostgreSQL, 2 uvicorn workers, {CONCURRENCY} keep-alive connections, "
        f"{DEVICES} devices, median of {args.rounds} x {args.seconds:.0f} s, {os.cpu_count()} CPUs"
    )
    print(
        f"{'scenario':<20}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'baseline req/s':>16}{'ratio':>8}{'target/s':>10}"
    )
    for scenario, figures in overlord.items():
        ratio = figures["rps"] / baseline[scenario]["rps"]
        print(
            f"{scenario:<20}{figures['rps']:>9.0f}{figures['p50_ms']:>9.1f}{figures['p99_ms']:>9.1f}"
            f"{baseline[scenario]['rps']:>16.0f}{ratio:>8.2f}{targets[scenario]:>10}"
        )


if __name__ == "__main__":
    main()
