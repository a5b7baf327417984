"""Throughput of one forwarded TCP stream (ADR 0074, forwarding slice): a 1 MiB HTTP page
fetched through ``fleetctl forward`` (its own process) and the agent's forward (a thread of
this process) through ``overlord serve``, with the device and the operator on one replica and
across two (PostgreSQL ``NOTIFY`` between them); the baseline, in the same run, is the same
page fetched straight from the same HTTP server. Median of ``--repeats`` fetches, one at a
time. Needs ``FLEET_TEST_PG_URL``.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_remote_forward.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

SOURCE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SOURCE))

from fleetcore.firstboot import RemoteAccess  # noqa: E402
from fleetcore.net import free_port  # noqa: E402
from overlord import migrate  # noqa: E402
from overlord.auth.models import KeyRole  # noqa: E402
from overlord.db import make_engine  # noqa: E402
from simulator.site import scratch_database  # noqa: E402
from tests.fleetctl.test_forward import allow_forwards  # noqa: E402
from tests.fleetctl.test_logs import device_joins  # noqa: E402
from tests.overlord.conftest import create_token  # noqa: E402
from tests.overlord.servers import overlord_process  # noqa: E402
from tests.overlord.test_remote_agent import _follower  # noqa: E402
from tests.overlord.test_replicas import _env, _register  # noqa: E402
from tests.overlord.tufrepo import make_repo  # noqa: E402
from tests.simulator.test_remote_forward import forward_process, open_session  # noqa: E402
from tests.webpages import BIG, serve_pages  # noqa: E402

MIB = 1024 * 1024


def fetch_rates(port: int, repeats: int) -> list[float]:
    """MiB/s of each fetch of ``/big`` from ``127.0.0.1:port``, one at a time."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        body = httpx.get(f"http://127.0.0.1:{port}/big", timeout=300).content
        assert body == BIG
        rates.append(len(body) / MIB / (time.perf_counter() - started))
    return rates


def forwarded(device_base: str, operator_base: str, url: str, web: int, repeats: int):
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    token = admin["Authorization"].removeprefix("Bearer ")
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    device_id, auth = _register(device_base, enrollment, os.urandom(4).hex().upper())
    allow_forwards(device_base, token, device_id)
    local = free_port()
    operator = forward_process(operator_base, token, device_id, f"{local}:{web}")
    open_session(operator_base, device_id, admin)
    client, _unused = _follower(device_base, device_id, auth, RemoteAccess(forward=True))
    follower = device_joins(client, RemoteAccess(forward=True))
    try:
        return fetch_rates(local, repeats)
    finally:
        operator.send_signal(signal.SIGINT)
        operator.communicate(timeout=60)
        follower.stop()


def summary(name: str, rates: list[float], baseline: float) -> str:
    median = statistics.median(rates)
    return f"{name}: {median:.1f} MiB/s (x{median / baseline:.3f} of direct, {len(rates)} fetches)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        scratch_database(os.environ["FLEET_TEST_PG_URL"], "bench_remote_forward") as url,
        serve_pages() as web,
    ):
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        repo = make_repo(Path(tmp) / "tuf")
        env = _env(url, repo, OVERLORD_RUN_SCHEDULER="false")
        direct = fetch_rates(web, args.repeats)
        with (
            overlord_process(env, log=Path(tmp) / "a.log") as a,
            overlord_process(env, log=Path(tmp) / "b.log") as b,
        ):
            one = forwarded(a, a, url, web, args.repeats)
            two = forwarded(a, b, url, web, args.repeats)
    baseline = statistics.median(direct)
    print(f"baseline, straight to the HTTP server: {baseline:.1f} MiB/s (1 MiB page)")
    print(summary("forwarded through one overlord serve replica", one, baseline))
    print(summary("forwarded across two replicas (PostgreSQL NOTIFY)", two, baseline))


if __name__ == "__main__":
    main()
