"""Overlord throughput on PostgreSQL with 2 uvicorn workers, each figure beside baselines.

    FLEET_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:55432/postgres \\
        .venv/bin/python bench/bench_overlord.py [--seconds 5] [--rounds 3] [--routes]

Scenarios (targets from the Overlord issue):
- heartbeat ingestion: POST /api/v1/devices/{id}/heartbeat, >= 2,000/s at p99 <= 100 ms;
- desired-state polls answered 304: GET .../desired-state with If-None-Match, >= 5,000/s.

Baselines, served by the same uvicorn settings (2 workers, uvloop, httptools) and driven by
the same load generator in the same run (``bench/load_baseline.py``): ``fastapi``, a bare
FastAPI app whose endpoints answer 204 and 304 without any work, and ``asgi``, the same
answers from a bare ASGI callable (the server stack's ceiling). ``--routes`` also measures
the Overlord with its fast path switched off (``OVERLORD_FAST_PATH=false``, ADR 0033).

The load generator is ``simulator.load.blast`` in a child process, 32 keep-alive
connections; each round warms up with 3 unmeasured passes over the 1,000 devices (so every
worker has every credential cached, as in a fleet's steady state) and then measures for
``--seconds``. Rounds alternate between the servers; the medians are printed with the ratio
to each baseline, and each round's one-minute load average (the machine is shared). Devices
are enrolled directly in the database; the per-device rate limit is lifted because the
benchmark compresses a fleet's minutes into seconds. All traffic stays on loopback.

To size a deployment, point it at a staging Overlord instead (no baseline then):

    FLEET_ENROLLMENT_TOKEN=mfe_... .venv/bin/python bench/bench_overlord.py \\
        --url https://overlord.staging.example [--seconds 5] [--rounds 3] [--devices 1000]

It enrols ``--devices`` devices there through the API (serials ``SIM00000000``..., as
``bench_load --url``; decommission them afterwards), so never aim it at production. Raise the
per-device rate limit (``OVERLORD_DEVICE_RATE_PER_S``) and nginx's per-address limits for
the run, or drive one replica directly: their 429s are reported as unexpected answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from fleetcore.wire import API_PREFIX  # noqa: E402
from overlord.auth import service as auth_service  # noqa: E402
from overlord.auth.models import KeyRole  # noqa: E402
from overlord.db import make_engine, make_sessionmaker, unit_of_work  # noqa: E402
from overlord.devices.models import Device  # noqa: E402
from simulator.errors import SimulatorError  # noqa: E402
from simulator.load import (  # noqa: E402
    BlastPlan,
    BlastResult,
    Endpoint,
    LoadPlan,
    OpStats,
    blast_in_subprocess,
    enroll_fleet,
    heartbeat_body,
    http_request,
)
from simulator.server import serve  # noqa: E402
from simulator.site import prepare_site, scratch_database  # noqa: E402

CONCURRENCY = 32
WORKERS = 2
TARGETS = {"heartbeat": 2000, "desired-state 304": 5000}
EXPECTED = {"heartbeat": 204, "desired-state 304": 304}


def enroll(url: str, count: int) -> list[tuple[str, str]]:
    """``count`` devices with their credentials, written straight to the database."""
    engine = make_engine(url)
    devices = []
    with unit_of_work(make_sessionmaker(engine)) as session:
        for i in range(count):
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


def enroll_remote(url: str, token: str, count: int) -> list[tuple[str, str]]:
    """``count`` devices enrolled through ``url``'s API (serials ``SIM00000000``...)."""
    plan = LoadPlan(base_url=url, enrollment_token=token, devices=count, requests=0)
    devices = asyncio.run(enroll_fleet(plan, OpStats()))
    return [(d.device_id, d.token) for d in devices]


async def _etags(url: str, requests: list[bytes]) -> list[str]:
    conn = await Endpoint.of(url).connect()
    try:
        return [(await conn.exchange(r))[1][b"etag"].decode() for r in requests]
    finally:
        conn.close()


def scenarios(url: str, devices: list[tuple[str, str]]) -> dict[str, list[bytes]]:
    """The prepared requests of both scenarios against one server (its own ETags)."""
    host = Endpoint.of(url).host_header
    body = json.dumps(heartbeat_body("1.0.0")).encode()
    auth = [{"Authorization": f"Bearer {token}"} for _d, token in devices]
    beats = [
        http_request("POST", f"{API_PREFIX}/devices/{d}/heartbeat", a, body, host=host)
        for (d, _t), a in zip(devices, auth, strict=True)
    ]
    paths = [f"{API_PREFIX}/devices/{d}/desired-state" for d, _t in devices]
    first = [http_request("GET", p, a, host=host) for p, a in zip(paths, auth, strict=True)]
    etags = asyncio.run(_etags(url, first))
    polls = [
        http_request("GET", p, a | {"If-None-Match": e}, host=host)
        for p, a, e in zip(paths, auth, etags, strict=True)
    ]
    return {"heartbeat": beats, "desired-state 304": polls}


Results = dict[tuple[str, str], list[BlastResult]]


def measure(
    urls: dict[str, str], devices: list[tuple[str, str]], rounds: int, seconds: float
) -> Results:
    """``rounds`` rounds alternating between the servers, each scenario in turn."""
    requests = {name: scenarios(url, devices) for name, url in urls.items()}
    results: Results = {}
    for n in range(rounds):
        for name, url in urls.items():
            for scenario, prepared in requests[name].items():
                plan = BlastPlan(
                    base_url=url,
                    requests=prepared,
                    seconds=seconds,
                    concurrency=CONCURRENCY,
                )
                result = blast_in_subprocess(plan).only(EXPECTED[scenario])
                results.setdefault((name, scenario), []).append(result)
                print(
                    f"round {n + 1} {name:<22} {scenario:<18} {result.rate:>7.0f}/s "
                    f"p99 {result.p99_s * 1000:6.1f} ms  load {result.load_average:.1f}",
                    flush=True,
                )
    return results


def external(args: argparse.Namespace) -> None:
    """Rounds against ``args.url`` alone, which enrols ``--devices`` devices for real."""
    token = os.environ.get("FLEET_ENROLLMENT_TOKEN")
    if not token:
        sys.exit("set FLEET_ENROLLMENT_TOKEN to an enrollment token of that Overlord")
    try:
        devices = enroll_remote(args.url, token, args.devices)
        results = measure({args.url: args.url}, devices, args.rounds, args.seconds)
    except (SimulatorError, OSError) as err:
        sys.exit(f"bench_overlord: {err}")
    print(
        f"\nmedians of {args.rounds} x {args.seconds:.0f} s against {args.url}, {args.devices} "
        f"devices, {CONCURRENCY} keep-alive connections (no baseline: another machine's figures)"
    )
    print(f"{'scenario':<19}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'target/s':>9}")
    for scenario in TARGETS:
        ours = results[(args.url, scenario)]
        print(
            f"{scenario:<19}{_median(ours, 'rate'):>8.0f}{_median(ours, 'p50_s') * 1000:>8.1f}"
            f"{_median(ours, 'p99_s') * 1000:>8.1f}{TARGETS[scenario]:>9}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--routes", action="store_true", help="also without the fast path")
    parser.add_argument(
        "--url", help="an Overlord to measure instead (token from FLEET_ENROLLMENT_TOKEN)"
    )
    args = parser.parse_args()
    if args.url:
        external(args)
        return
    pg_url = os.environ.get("FLEET_TEST_PG_URL")
    if not pg_url:
        raise SystemExit("set FLEET_TEST_PG_URL to a PostgreSQL server URL")
    with (
        tempfile.TemporaryDirectory() as tmp,
        scratch_database(pg_url, "overlord_bench") as url,
        ExitStack() as stack,
    ):
        site = prepare_site(Path(tmp), url)
        devices = enroll(url, args.devices)
        env = site.env(run_scheduler=False)
        baseline_env = {"PYTHONPATH": str(BENCH)}
        servers = {"overlord": serve(env=env, workers=WORKERS, log=Path(tmp) / "overlord.log")}
        if args.routes:
            routes_env = site.env(run_scheduler=False, fast_path=False)
            servers["overlord, routes only"] = serve(env=routes_env, workers=WORKERS)
        servers["fastapi"] = serve(
            "load_baseline:app", env=baseline_env, workers=WORKERS, factory=False
        )
        servers["asgi"] = serve(
            "load_baseline:asgi_app", env=baseline_env, workers=WORKERS, factory=False
        )
        urls = {name: stack.enter_context(server) for name, server in servers.items()}
        results = measure(urls, devices, args.rounds, args.seconds)
    report(results, args)


def _median(results: list[BlastResult], field: str) -> float:
    return statistics.median(getattr(r, field) for r in results)


def report(results: Results, args: argparse.Namespace) -> None:
    loads = [r.load_average for rs in results.values() for r in rs]
    print(
        f"\nPostgreSQL, {WORKERS} uvicorn workers, {CONCURRENCY} keep-alive connections, "
        f"{args.devices} devices, median of {args.rounds} x {args.seconds:.0f} s, {os.cpu_count()} "
        f"CPUs, load average {min(loads):.1f}-{max(loads):.1f} during the rounds"
    )
    print(
        f"{'server':<22}{'scenario':<19}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'fastapi/s':>10}{'ratio':>7}{'asgi/s':>8}{'ratio':>7}{'target/s':>9}"
    )
    names = sorted({name for name, _s in results if name not in {"fastapi", "asgi"}})
    for name in names:
        for scenario in TARGETS:
            ours = results[(name, scenario)]
            rate = _median(ours, "rate")
            fastapi = _median(results[("fastapi", scenario)], "rate")
            asgi = _median(results[("asgi", scenario)], "rate")
            print(
                f"{name:<22}{scenario:<19}{rate:>8.0f}{_median(ours, 'p50_s') * 1000:>8.1f}"
                f"{_median(ours, 'p99_s') * 1000:>8.1f}{fastapi:>10.0f}{rate / fastapi:>7.2f}"
                f"{asgi:>8.0f}{rate / asgi:>7.2f}{TARGETS[scenario]:>9}"
            )


if __name__ == "__main__":
    main()
