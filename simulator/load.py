"""Load mode: thousands of lightweight simulated devices against a real Overlord.

The repository's one load generator. Two ways to drive it:

- :func:`run_load`: each simulated device enrolls once (over httpx), then the workers send
  its heartbeats and desired-state polls (with ``If-None-Match``, so an unchanged state costs
  a 304) as fast as the server answers: a closed loop with ``concurrency`` requests in
  flight. The report gives throughput and latency percentiles per operation.
- :func:`blast` / :func:`blast_in_subprocess`: prepared requests replayed for a fixed time
  over ``concurrency`` keep-alive connections, for benchmarks (``bench/bench_overlord.py``).
  In a child process of its own (on uvloop when installed) it does not share a GIL with the
  caller, and a few microseconds of client work per request keep it off the critical path.

Both speak HTTP/1.1 through :class:`HttpConnection`, a minimal keep-alive client: a general
client such as httpx costs more CPU per request than the server under test, and on a small
machine the generator would become the bottleneck. Traffic goes only to the given address;
keep it on loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import multiprocessing
import os
import random
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

import httpx

from fleetcore.layout import Slot
from fleetcore.release import Hardware
from fleetcore.version import Version
from fleetcore.wire import (
    API_PREFIX,
    Health,
    Heartbeat,
    RegisterRequest,
    RegisterResponse,
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


def heartbeat_body(version: str) -> dict[str, object]:
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


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; responses must carry a Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(
        cls, host: str, port: int, *, tls: ssl.SSLContext | None = None
    ) -> HttpConnection:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send one prepared request; returns status, lower-case headers and body."""
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        body = await self._reader.readexactly(length) if length else b""
        return status, headers, body

    def close(self) -> None:
        self._writer.close()


def http_request(
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    *,
    host: str = "127.0.0.1",
) -> bytes:
    """The bytes of one HTTP/1.1 request (JSON body when ``body`` is given)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class Endpoint:
    """Where load goes: a host and port, over TLS for an https:// URL."""

    host: str
    port: int
    tls: ssl.SSLContext | None

    @classmethod
    def of(cls, base_url: str) -> Endpoint:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise SimulatorError(f"load mode needs http(s)://host[:port], not {base_url}")
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        return cls(parts.hostname, port, ssl.create_default_context() if https else None)

    @property
    def host_header(self) -> str:
        return self.host if self.port in {80, 443} else f"{self.host}:{self.port}"

    async def connect(self) -> HttpConnection:
        return await HttpConnection.open(self.host, self.port, tls=self.tls)


async def _timed_exchange(
    stats: OpStats, conn: HttpConnection, request: bytes
) -> tuple[int, dict[bytes, bytes]] | None:
    started = time.perf_counter()
    try:
        status, headers, _body = await conn.exchange(request)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        stats.errors += 1
        return None
    stats.latencies.append(time.perf_counter() - started)
    stats.statuses[status] += 1
    if status >= 400:
        stats.errors += 1
    return status, headers


async def enroll_fleet(plan: LoadPlan, stats: OpStats) -> list[SimDevice]:
    """Enroll ``plan.devices`` devices through the API, ``plan.concurrency`` at a time."""
    Endpoint.of(plan.base_url)  # one clear error for a URL load mode cannot drive
    limits = httpx.Limits(
        max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency
    )
    async with httpx.AsyncClient(base_url=plan.base_url, limits=limits, timeout=30.0) as client:
        gate = asyncio.Semaphore(plan.concurrency)

        async def enroll_one(i: int) -> SimDevice:
            async with gate:
                return await enroll(client, plan, i, stats)

        return list(await asyncio.gather(*(enroll_one(i) for i in range(plan.devices))))


async def run_load(plan: LoadPlan) -> LoadReport:
    """Enroll ``plan.devices`` devices, then drive ``plan.requests`` requests; return the report."""
    ops = {op: OpStats() for op in Operation}
    endpoint = Endpoint.of(plan.base_url)
    devices = await enroll_fleet(plan, ops[Operation.ENROLL])
    heartbeat = json.dumps(heartbeat_body(plan.image_version)).encode()
    rng = random.Random(plan.seed)
    schedule = [
        (devices[i % len(devices)], rng.random() < plan.heartbeat_share)
        for i in range(plan.requests)
    ]
    cursor = itertools.count()

    async def worker() -> None:
        conn = await endpoint.connect()
        try:
            while (n := next(cursor)) < len(schedule):
                device, beat = schedule[n]
                headers = {"Authorization": f"Bearer {device.token}"}
                if beat:
                    url = f"{API_PREFIX}/devices/{device.device_id}/heartbeat"
                    request = http_request(
                        "POST", url, headers, heartbeat, host=endpoint.host_header
                    )
                    answer = await _timed_exchange(ops[Operation.HEARTBEAT], conn, request)
                else:
                    if device.etag:
                        headers["If-None-Match"] = device.etag
                    url = f"{API_PREFIX}/devices/{device.device_id}/desired-state"
                    request = http_request("GET", url, headers, host=endpoint.host_header)
                    answer = await _timed_exchange(ops[Operation.POLL], conn, request)
                    if answer is not None and answer[0] == 200:
                        device.etag = answer[1].get(b"etag", b"").decode() or None
                if answer is None:  # the connection is unusable now: open another
                    conn.close()
                    conn = await endpoint.connect()
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
    elapsed = time.perf_counter() - started
    return LoadReport(elapsed_s=elapsed, ops=ops)


@dataclass(frozen=True)
class BlastPlan:
    """Prepared requests (from :func:`http_request`), cycled for ``seconds`` per round.

    ``base_url`` is ``http(s)://host[:port]``; the requests carry its ``Host`` header.
    """

    base_url: str
    requests: list[bytes]
    seconds: float = 5.0
    concurrency: int = 32
    warmup_passes: int = 3  # unmeasured passes over ``requests`` first (warm caches)


@dataclass(frozen=True)
class BlastResult:
    rate: float
    p50_s: float
    p99_s: float
    statuses: dict[int, int]
    load_average: float  # one-minute load average of the machine at the end

    def only(self, *expected: int) -> BlastResult:
        """Itself, if every answer had one of the ``expected`` statuses."""
        unexpected = {s: n for s, n in self.statuses.items() if s not in expected}
        if unexpected:
            raise SimulatorError(f"unexpected answers during a blast: {unexpected}")
        return self


async def _blast_worker(
    plan: BlastPlan, start: int, count: int | None, stop_at: float, stats: OpStats
) -> None:
    endpoint = Endpoint.of(plan.base_url)
    conn = await endpoint.connect()
    requests, i, sent = plan.requests, start, 0
    try:
        while (count is None or sent < count) and time.perf_counter() < stop_at:
            if await _timed_exchange(stats, conn, requests[i % len(requests)]) is None:
                conn.close()
                conn = await endpoint.connect()
            i += 1
            sent += 1
    finally:
        conn.close()


async def _blast_round(plan: BlastPlan, *, count: int | None, seconds: float) -> OpStats:
    stats = OpStats()
    stop_at = time.perf_counter() + seconds
    step = max(1, len(plan.requests) // plan.concurrency)
    per_worker = None if count is None else -(-count // plan.concurrency)
    await asyncio.gather(
        *(
            _blast_worker(plan, n * step, per_worker, stop_at, stats)
            for n in range(plan.concurrency)
        )
    )
    return stats


async def blast(plan: BlastPlan) -> BlastResult:
    """Warm up, then replay ``plan.requests`` for ``plan.seconds``; figures of that round."""
    await _blast_round(plan, count=plan.warmup_passes * len(plan.requests), seconds=120.0)
    started = time.perf_counter()
    stats = await _blast_round(plan, count=None, seconds=plan.seconds)
    elapsed = time.perf_counter() - started
    return BlastResult(
        rate=len(stats.latencies) / elapsed,
        p50_s=stats.percentile(50),
        p99_s=stats.percentile(99),
        statuses=dict(stats.statuses),
        load_average=os.getloadavg()[0],
    )


def _blast_here(plan: BlastPlan) -> BlastResult:
    try:
        import uvloop
    except ImportError:  # plain asyncio: slower, still correct
        return asyncio.run(blast(plan))
    return uvloop.run(blast(plan))


def blast_in_subprocess(plan: BlastPlan) -> BlastResult:
    """:func:`blast` in a fresh child process, so the caller's GIL is not shared."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_blast_here, plan).result()
