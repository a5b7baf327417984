"""Load mode against the Overlord on PostgreSQL with 2 workers, beside a bare-app baseline.

    FLEET_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:55432/postgres \\
        .venv/bin/python bench/bench_load.py [--devices 1000] [--requests 6000] [--rounds 3]

``simulator.load`` enrolls ``--devices`` devices, then drives heartbeats and desired-state
polls (``If-None-Match``: 304 once a device has its ETag), closed loop with ``--concurrency``
requests in flight. The baseline is ``bench/load_baseline.py``, a bare FastAPI app on the
same uvicorn settings, driven by the same generator in the same run; rounds alternate between
the two and the medians are printed with their ratio. Traffic stays on loopback.

To size a deployment of your own, point it at a staging Overlord instead (no baseline then):

    FLEET_ENROLLMENT_TOKEN=mfe_... .venv/bin/python bench/bench_load.py \\
        --url https://overlord.staging.example [--devices 1000] [--requests 6000]

It enrols ``--devices`` devices there for real (serials ``SIM00000000``...; a rerun re-enrols
the same ones; decommission them afterwards), so never aim it at production. The Overlord's
per-device rate limit (``OVERLORD_DEVICE_RATE_PER_S``) and nginx's per-address limits answer
a load generator on one address with 429s, counted as errors: raise them on the staging stack
for the run, or drive one replica directly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from overlord.auth.models import KeyRole  # noqa: E402
from simulator.errors import SimulatorError  # noqa: E402
from simulator.load import LoadPlan, LoadReport, Operation, run_load  # noqa: E402
from simulator.server import serve  # noqa: E402
from simulator.site import prepare_site, scratch_database  # noqa: E402

WORKERS = 2


def figures(report: LoadReport) -> dict[str, float]:
    return {
        "heartbeats/s": report.rate(Operation.HEARTBEAT),
        "heartbeat p99 ms": report.ops[Operation.HEARTBEAT].percentile(99) * 1000,
        "304 polls/s": report.rate(Operation.POLL, 304),
        "poll p99 ms": report.ops[Operation.POLL].percentile(99) * 1000,
        "errors": float(sum(s.errors for s in report.ops.values())),
    }


def plan(args: argparse.Namespace, base_url: str, token: str, *, seed: int) -> LoadPlan:
    return LoadPlan(
        base_url=base_url,
        enrollment_token=token,
        devices=args.devices,
        requests=args.requests,
        concurrency=args.concurrency,
        seed=seed,
    )


def external(args: argparse.Namespace) -> None:
    """Rounds against ``args.url`` alone; the medians of its figures."""
    token = os.environ.get("FLEET_ENROLLMENT_TOKEN")
    if not token:
        sys.exit("set FLEET_ENROLLMENT_TOKEN to an enrollment token of that Overlord")
    runs = []
    for n in range(args.rounds):
        try:
            report = asyncio.run(run_load(plan(args, args.url, token, seed=n)))
        except SimulatorError as err:
            sys.exit(f"bench_load: {err}")
        runs.append(figures(report))
        print(f"round {n + 1} {args.url}:\n{report.summary()}", flush=True)
    print(
        f"\nmedians of {args.rounds} rounds against {args.url}, {args.devices} devices, "
        f"{args.concurrency} requests in flight (no baseline: another machine's figures):"
    )
    for key in runs[0]:
        print(f"{key:<18} {statistics.median(r[key] for r in runs):>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--url", help="an Overlord to measure instead (token from FLEET_ENROLLMENT_TOKEN)"
    )
    args = parser.parse_args()
    if args.url:
        external(args)
        return
    pg_url = os.environ.get("FLEET_TEST_PG_URL")
    if not pg_url:
        sys.exit("set FLEET_TEST_PG_URL to a PostgreSQL server (see the README's test section)")
    runs: dict[str, list[dict[str, float]]] = {"overlord": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp, scratch_database(pg_url, "bench_load") as url:
        site = prepare_site(Path(tmp), url)
        token = site.token(KeyRole.ENROLLMENT, "bench_load")
        overlord = serve(
            env=site.env(run_scheduler=False), workers=WORKERS, log=Path(tmp) / "overlord.log"
        )
        baseline = serve(
            "load_baseline:app", env={"PYTHONPATH": str(BENCH)}, workers=WORKERS, factory=False
        )
        with overlord as overlord_url, baseline as baseline_url:
            for n in range(args.rounds):
                for name, base in (("overlord", overlord_url), ("baseline", baseline_url)):
                    report = asyncio.run(run_load(plan(args, base, token, seed=n)))
                    runs[name].append(figures(report))
                    print(f"round {n + 1} {name}:\n{report.summary()}", flush=True)
    print(
        f"\nmedians of {args.rounds} rounds, {WORKERS} uvicorn workers, PostgreSQL, "
        f"{args.devices} devices, {args.concurrency} requests in flight:"
    )
    print(f"{'figure':<18} {'overlord':>10} {'baseline':>10} {'ratio':>7}")
    for key in runs["overlord"][0]:
        ours = statistics.median(r[key] for r in runs["overlord"])
        theirs = statistics.median(r[key] for r in runs["baseline"])
        ratio = f"{ours / theirs:7.2f}" if theirs else "      -"
        print(f"{key:<18} {ours:>10.1f} {theirs:>10.1f} {ratio}")


if __name__ == "__main__":
    main()
