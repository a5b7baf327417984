"""Load mode against a real Overlord (uvicorn subprocess, 2 workers) on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from overlord.auth.models import KeyRole
from overlord.db import make_engine
from overlord.devices.models import Device
from simulator.errors import SimulatorError
from simulator.load import (
    BlastPlan,
    LoadPlan,
    LoadReport,
    Operation,
    OpStats,
    blast_in_subprocess,
    http_request,
    run_load,
)
from simulator.server import serve
from simulator.site import prepare_site
from tests.ops.nginxrun import run_nginx

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_percentiles_pick_ranks_of_the_sorted_latencies():
    stats = OpStats(latencies=[0.005, 0.001, 0.004, 0.002, 0.003])
    assert stats.percentile(50) == 0.003
    assert stats.percentile(100) == 0.005
    assert stats.percentile(1) == 0.001


def test_rate_counts_one_status_or_all():
    stats = OpStats(latencies=[0.1] * 4)
    stats.statuses.update({200: 1, 304: 3})
    report = LoadReport(
        elapsed_s=2.0, ops={op: OpStats() for op in Operation} | {Operation.POLL: stats}
    )
    assert report.rate(Operation.POLL) == 2.0
    assert report.rate(Operation.POLL, 304) == 1.5
    assert "304x3" in report.summary()


@pytest.mark.integration
def test_load_mode_drives_heartbeats_and_etag_polls(pg_database: str, tmp_path: Path):
    site = prepare_site(tmp_path, pg_database)
    enrollment = site.token(KeyRole.ENROLLMENT, "load test")
    env = site.env(run_scheduler=False)
    with serve(env=env, workers=2, log=tmp_path / "overlord.log") as base:
        plan = LoadPlan(
            base_url=base, enrollment_token=enrollment, devices=40, requests=1200, concurrency=8
        )
        report = asyncio.run(run_load(plan))
    heartbeats, polls = report.ops[Operation.HEARTBEAT], report.ops[Operation.POLL]
    assert report.ops[Operation.ENROLL].statuses == {201: 40}
    assert heartbeats.errors == 0 and polls.errors == 0
    assert len(heartbeats.latencies) + len(polls.latencies) == 1200
    assert set(heartbeats.statuses) == {204}
    # Each device's first poll is a 200 with an ETag; the rest are answered 304. A device's
    # next poll may go out before its first answer arrived (closed loop, 8 in flight), so a
    # few devices may see a second 200.
    assert polls.statuses[200] <= 40 + plan.concurrency
    assert polls.statuses[304] == len(polls.latencies) - polls.statuses[200] > 0
    engine = make_engine(pg_database)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Device)) == 40
    engine.dispose()


@pytest.mark.integration
def test_load_mode_fails_clearly_on_a_wrong_enrollment_token(pg_database: str, tmp_path: Path):
    site = prepare_site(tmp_path, pg_database)
    with serve(env=site.env(run_scheduler=False), log=tmp_path / "overlord.log") as base:
        plan = LoadPlan(base_url=base, enrollment_token="wrong", devices=2, requests=10)
        with pytest.raises(SimulatorError, match="enrollment of sim-0000"):
            asyncio.run(run_load(plan))


def test_blast_replays_prepared_requests_from_a_child_process(tmp_path: Path):
    env = {"PYTHONPATH": str(BENCH)}
    with serve("load_baseline:asgi_app", env=env, factory=False) as base:
        poll = {"If-None-Match": '"baseline"'}
        requests = [
            http_request("POST", "/api/v1/devices/d1/heartbeat", {"Authorization": "x"}, b"{}"),
            http_request("GET", "/api/v1/devices/d1/desired-state", poll),
        ]
        plan = BlastPlan(base_url=base, requests=requests, seconds=0.5, concurrency=2)
        result = blast_in_subprocess(plan).only(204, 304)
    assert set(result.statuses) == {204, 304}
    assert result.rate > 0 and 0 < result.p50_s <= result.p99_s
    with pytest.raises(SimulatorError, match="unexpected answers"):
        result.only(204)


@pytest.mark.integration
def test_bench_load_measures_an_overlord_of_its_own_behind_nginx_over_tls(
    pg_database: str, tmp_path: Path
):
    """``bench/bench_load.py --url``: what an operator runs against a staging stack."""
    site = prepare_site(tmp_path, pg_database)
    token = site.token(KeyRole.ENROLLMENT, "bench against a stack")
    with serve(env=site.env(run_scheduler=False), log=tmp_path / "overlord.log") as base:
        port = int(base.rsplit(":", 1)[1])
        upstreams = {"overlord": port, "grafana": port, "loki": port}
        with run_nginx(tmp_path / "nginx", upstreams) as (https, _http, cert):
            argv = [sys.executable, str(BENCH / "bench_load.py"), "--url", https]
            argv += ["--devices", "5", "--requests", "100", "--rounds", "1"]
            env = os.environ | {"FLEET_ENROLLMENT_TOKEN": token, "SSL_CERT_FILE": str(cert)}
            run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr
            medians = dict(line.rsplit(None, 1) for line in run.stdout.splitlines()[-5:])
            assert float(medians["heartbeats/s"]) > 0 and float(medians["304 polls/s"]) > 0
            assert float(medians["errors"]) == 0
            env["FLEET_ENROLLMENT_TOKEN"] = "mfe_wrong"
            wrong = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("bench_load: enrollment of sim-0000")
    assert "Traceback" not in wrong.stderr


@pytest.mark.integration
def test_bench_overlord_measures_an_overlord_by_its_url(pg_database: str, tmp_path: Path):
    """``bench/bench_overlord.py --url``: one replica driven directly, devices enrolled via API."""
    site = prepare_site(tmp_path, pg_database)
    token = site.token(KeyRole.ENROLLMENT, "bench_overlord against a replica")
    with serve(env=site.env(run_scheduler=False), log=tmp_path / "overlord.log") as base:
        argv = [sys.executable, str(BENCH / "bench_overlord.py"), "--url", base]
        argv += ["--devices", "4", "--seconds", "0.3", "--rounds", "1"]
        env = os.environ | {"FLEET_ENROLLMENT_TOKEN": token}
        run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        rows = {line[:19].strip(): line[19:].split() for line in run.stdout.splitlines()[-2:]}
        assert float(rows["heartbeat"][0]) > 0 and float(rows["desired-state 304"][0]) > 0
        env["FLEET_ENROLLMENT_TOKEN"] = "mfe_wrong"
        wrong = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("bench_overlord: enrollment of sim-0000")
    assert "Traceback" not in wrong.stderr
