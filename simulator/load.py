"""Load mode: thousands of lightweight simulated devices against a real Overlord.

Each simulated device enrolls once, then the workers send its heartbeats and desired-state
polls (with ``If-None-Match``, so an unchanged state costs a 304) as fast as the server
answers: a closed loop with ``concurrency`` requests in flight. The report gives throughput
and latency percentiles per operation. Traffic goes only to ``base_url``; keep it on loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum

import httpx

from fleetcore.release import Hardware
from fleetcore.version import Version
from fleetcore.wire import (
    API_PREFIX,
    Health,
    Heartbeat,
    RegisterRequest,
    RegisterResponse,
    Slot,
    UpdateState,
)
from simulator.errors import SimulatorError


class Operation(StrEnum):
    ENROLL = "enroll"
    HEARTBEAT = "heartbeat"
    POLL = "poll"


@dataclass(frozen=True)
class LoadPlan:
    base_url: str
    enrollment_token: str
    devices: int = 1000
    requests: int = 20_000
    concurrency: int = 64
    heartbeat_share: float = 0.5
    image_version: str = "1.0.0"
    seed: int = 1


@dataclass
class OpStats:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    def percentile(self, pct: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = min(
            len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1)
        )  # nearest rank
        return ordered[rank]


@dataclass
class LoadReport:
    elapsed_s: float
    ops: dict[Operation, OpStats]

    def rate(self, op: Operation, status: int | None = None) -> float:
        """Requests per second of ``op``, or only those answered with ``status``."""
        stats = self.ops[op]
        count = len(stats.latencies) if status is None else stats.statuses[status]
        return count / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> str:
        lines = [
            f"{'operation':<10} {'count':>7} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
            "  statuses"
        ]
        for op in (Operation.HEARTBEAT, Operation.POLL):
            stats = self.ops[op]
            lines.append(
                f"{op.value:<10} {len(stats.latencies):>7} {self.rate(op):>9.0f} "
                f"{stats.percentile(50) * 1000:>8.1f} {stats.percentile(99) * 1000:>8.1f} "
                f"{stats.errors:>6}  "
                + " ".join(f"{code}x{n}" for code, n in sorted(stats.statuses.items()))
            )
        return "\n".join(lines)


@dataclass
class SimDevice:
    device_id: str
    token: str
    etag: str | None = None


def _heartbeat(version: str) -> dict[str, object]:
    return Heartbeat(
        image_version=Version(version),
        booted_slot=Slot.A,
        committed_slot=Slot.A,
        update_state=UpdateState.IDLE,
        health=Health.HEALTHY,
        free_data_bytes=8 << 30,
        uptime_s=3600.0,
    ).model_dump(mode="json")


async def _timed(stats: OpStats, request: Awaitable[httpx.Response]) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await request
    except httpx.HTTPError:
        stats.errors += 1
        return None
    stats.latencies.append(time.perf_counter() - started)
    stats.statuses[response.status_code] += 1
    if response.status_code >= 400:
        stats.errors += 1
    return response


async def enroll(
    client: httpx.AsyncClient, plan: LoadPlan, index: int, stats: OpStats
) -> SimDevice:
    body = RegisterRequest(
        enrollment_token=plan.enrollment_token,
        hostname=f"sim-{index:05d}",
        hardware=Hardware.PI4,
        serial=f"SIM{index:08d}",
        image_version=Version(plan.image_version),
        booted_slot=Slot.A,
    ).model_dump(mode="json")
    response = await _timed(stats, client.post(f"{API_PREFIX}/devices/register", json=body))
    if response is None or response.status_code >= 400:
        detail = response.text[:200] if response is not None else "no response"
        raise SimulatorError(f"enrollment of sim-{index:05d} failed: {detail}")
    answer = RegisterResponse.model_validate(response.json())
    return SimDevice(answer.device_id, answer.device_token)


async def run_load(plan: LoadPlan) -> LoadReport:
    """Enroll ``plan.devices`` devices, then drive ``plan.requests`` requests; return the report."""
    ops = {op: OpStats() for op in Operation}
    limits = httpx.Limits(
        max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency
    )
    async with httpx.AsyncClient(base_url=plan.base_url, limits=limits, timeout=30.0) as client:
        gate = asyncio.Semaphore(plan.concurrency)

        async def enroll_one(i: int) -> SimDevice:
            async with gate:
                return await enroll(client, plan, i, ops[Operation.ENROLL])

        devices = await asyncio.gather(*(enroll_one(i) for i in range(plan.devices)))
        heartbeat = _heartbeat(plan.image_version)
        rng = random.Random(plan.seed)
        schedule = [
            (devices[i % len(devices)], rng.random() < plan.heartbeat_share)
            for i in range(plan.requests)
        ]
        cursor = itertools.count()

        async def worker() -> None:
            while (n := next(cursor)) < len(schedule):
                device, beat = schedule[n]
                headers = {"Authorization": f"Bearer {device.token}"}
                if beat:
                    url = f"{API_PREFIX}/devices/{device.device_id}/heartbeat"
                    await _timed(
                        ops[Operation.HEARTBEAT], client.post(url, json=heartbeat, headers=headers)
                    )
                    continue
                if device.etag:
                    headers["If-None-Match"] = device.etag
                url = f"{API_PREFIX}/devices/{device.device_id}/desired-state"
                response = await _timed(ops[Operation.POLL], client.get(url, headers=headers))
                if response is not None and response.status_code == 200:
                    device.etag = response.headers.get("ETag")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
        elapsed = time.perf_counter() - started
    return LoadReport(elapsed_s=elapsed, ops=ops)
