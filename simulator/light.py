"""Lightweight devices for rollouts at scale: they follow desired state over the wire API only.

Each device is an asyncio task: heartbeat, poll desired state (ETag), and when the Overlord
points it at a newer OS version, report the update as the real agent does (``update-available``,
``install-started``, ``trial-started``, then ``update-committed``) after ``install_s``; no
disk is written. Thousands of them run in one process; the real updater's figure comes from
the demo with a smaller fleet.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from fleetcore.layout import Slot
from fleetcore.version import Version
from fleetcore.wire import (
    API_PREFIX,
    DesiredPrestage,
    DesiredState,
    Event,
    EventBatch,
    EventKind,
    Health,
    Heartbeat,
    UpdateState,
)
from simulator.errors import SimulatorError
from simulator.load import LoadPlan, OpStats, enroll


@dataclass(frozen=True)
class LightTiming:
    """Seconds between agent cycles and for an install; all jittered by ``jitter``.

    An install is a stageable part (``install_s``: download, write, verify into the inactive
    slot) and ``reboot_s`` (trial reboot, health check, commit). A device told to pre-stage
    (ADR 0082) does the first part before it is admitted, and admission costs only the second.
    Intervals the Overlord names (a pre-stage hint's ``poll_s``) are divided by ``scale``, as
    the bench compresses every other time constant.
    """

    poll_s: float = 1.0
    install_s: float = 2.0
    reboot_s: float = 0.0
    jitter: float = 0.5
    scale: float = 1.0

    def draw(self, rng: random.Random, seconds: float) -> float:
        return seconds * rng.uniform(1 - self.jitter, 1 + self.jitter)


@dataclass
class LightDevice:
    device_id: str
    token: str
    version: Version
    slot: Slot = Slot.A
    state: UpdateState = UpdateState.IDLE
    etag: str | None = None
    desired: Version | None = None
    hint: DesiredPrestage | None = None  # the desired state's pre-stage hint (ADR 0082)
    staged: Version | None = None
    staging: asyncio.Task[None] | None = None
    seq: int = 0
    outbox: list[Event] = field(default_factory=list)
    committed_at: dict[str, float] = field(default_factory=dict)
    staged_at: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    last_error: str | None = None
    asked_s: float = 0.0  # the waits it asked for between cycles, summed
    took_s: float = 0.0  # the time from one cycle's start to the next's, less installs, summed
    installing_s: float = 0.0  # time spent installing (a deliberate wait, not a late clock)

    @property
    def prestage(self) -> Version | None:
        """The release the hint asks to stage, if any."""
        return self.hint.version if self.hint is not None else None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def heartbeat(self) -> dict[str, object]:
        return Heartbeat(
            image_version=self.version,
            booted_slot=self.slot,
            committed_slot=self.slot,
            update_state=self.state,
            health=Health.HEALTHY,
            free_data_bytes=8 << 30,
            uptime_s=60.0,
        ).model_dump(mode="json")

    def queue(self, *kinds: EventKind, version: Version) -> None:
        """Queue events as the agent's on-disk queue does; they are sent until acknowledged."""
        for kind in kinds:
            self.seq += 1
            self.outbox.append(
                Event(seq=self.seq, time=datetime.now(UTC), kind=kind, version=version)
            )


class LightFleet:
    def __init__(self, base_url: str, timing: LightTiming, *, connections: int = 64) -> None:
        self.timing = timing
        self.prestage = True  # honour DesiredState.prestage; False models older agents
        self.devices: list[LightDevice] = []
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0)
        self.stop = asyncio.Event()

    async def enroll(self, enrollment_token: str, count: int, version: Version) -> None:
        plan = LoadPlan(
            base_url=str(self.client.base_url),
            enrollment_token=enrollment_token,
            devices=count,
            image_version=str(version),
        )
        stats, gate = OpStats(), asyncio.Semaphore(32)

        async def one(i: int) -> LightDevice:
            async with gate:
                sim = await enroll(self.client, plan, i, stats)
            return LightDevice(sim.device_id, sim.token, version)

        self.devices = list(await asyncio.gather(*(one(i) for i in range(count))))

    def committed(self, version: Version) -> list[float]:
        """Monotonic times at which devices committed ``version``, sorted."""
        return sorted(t for d in self.devices if (t := d.committed_at.get(str(version))))

    def staged(self, version: Version, *, by: float) -> int:
        """How many devices had staged ``version`` by the monotonic time ``by``."""
        return sum(1 for d in self.devices if d.staged_at.get(str(version), by) < by)

    def clock(self) -> tuple[float, float]:
        """Seconds asked for and seconds taken between cycles, summed over the fleet so far."""
        return sum(d.asked_s for d in self.devices), sum(d.took_s for d in self.devices)

    @staticmethod
    def clock_ratio(before: tuple[float, float], after: tuple[float, float]) -> float:
        """Time taken over time asked between two :meth:`clock` readings: 1.0 when every
        cycle came when its device asked (a cycle's own requests count as late), above when
        the machine could not keep the compressed clock and the figures are upper bounds.
        Right whatever each device asked for, the staged devices' short polls included."""
        asked, took = after[0] - before[0], after[1] - before[1]
        return took / asked if asked > 0 else float("nan")

    async def run(self) -> None:
        """Run every device until :attr:`stop` is set."""
        await asyncio.gather(
            *(self._device(d, random.Random(i)) for i, d in enumerate(self.devices))
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def _device(self, device: LightDevice, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, self.timing.poll_s))  # spread the first cycle
        # the last cycle's start, the wait it asked for, and the install time before it
        previous: tuple[float, float, float] | None = None
        while not self.stop.is_set():
            began, installing = time.monotonic(), device.installing_s
            if previous is not None:
                device.asked_s += previous[1]
                device.took_s += began - previous[0] - (device.installing_s - previous[2])
            try:
                await self._cycle(device, rng)
            except (httpx.HTTPError, SimulatorError) as err:
                device.errors += 1
                device.last_error = f"{type(err).__name__}: {err}"
            wait = self._wait_s(device, rng)
            previous = (began, wait, installing)
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=wait)
            except TimeoutError:
                continue

    async def _post(self, path: str, device: LightDevice, body: dict[str, object]) -> None:
        url = f"{API_PREFIX}/devices/{device.device_id}/{path}"
        response = await self.client.post(url, headers=device.headers, json=body)
        if response.status_code >= 400:
            raise SimulatorError(f"POST {path}: {response.status_code}")

    async def _flush(self, device: LightDevice) -> None:
        if device.outbox:
            batch = EventBatch(events=device.outbox).model_dump(mode="json")
            await self._post("events", device, batch)
            device.outbox = []

    async def _cycle(self, device: LightDevice, rng: random.Random) -> None:
        await self._flush(device)
        await self._post("heartbeat", device, device.heartbeat())
        headers = dict(device.headers)
        if device.etag:
            headers["If-None-Match"] = device.etag
        response = await self.client.get(
            f"{API_PREFIX}/devices/{device.device_id}/desired-state", headers=headers
        )
        if response.status_code == 200:
            device.etag = response.headers.get("ETag")
            desired = DesiredState.model_validate(response.json())
            device.desired = desired.os.version if desired.os else None
            device.hint = desired.prestage
        elif response.status_code != 304:
            raise SimulatorError(f"desired-state: {response.status_code}")
        if device.desired is not None and device.version < device.desired:
            began = time.monotonic()
            await self._update(device, device.desired, rng)
            device.installing_s += time.monotonic() - began
        elif self._should_stage(device) and device.prestage is not None:
            device.staging = asyncio.create_task(self._stage(device, device.prestage, rng))

    def _wait_s(self, device: LightDevice, rng: random.Random) -> float:
        """Until the next cycle: the hint's ``poll_s`` while its release is staged here (the
        real agent's rule, ``Agent.staged_poll_s``) when that is sooner than the usual jittered
        interval, which it is for a real agent (10 s against 30-120 s)."""
        usual = self.timing.draw(rng, self.timing.poll_s)
        hint = device.hint
        if hint is not None and hint.poll_s is not None and device.staged == hint.version:
            return min(hint.poll_s / self.timing.scale, usual)
        return usual

    def _should_stage(self, device: LightDevice) -> bool:
        hint = device.prestage
        if not self.prestage or hint is None or device.staging is not None:
            return False
        return device.version < hint and device.staged != hint

    async def _stage(self, device: LightDevice, target: Version, rng: random.Random) -> None:
        """Download and write ``target`` into the inactive slot in the background."""
        await asyncio.sleep(self.timing.draw(rng, self.timing.install_s))
        device.staged = target
        device.staged_at[str(target)] = time.monotonic()
        device.staging = None

    async def _update(self, device: LightDevice, target: Version, rng: random.Random) -> None:
        device.state = UpdateState.INSTALLING
        device.queue(EventKind.UPDATE_AVAILABLE, EventKind.INSTALL_STARTED, version=target)
        await self._flush(device)
        if device.staging is not None:  # admitted while staging: the rest of it still counts
            await device.staging
        if device.staged != target:
            await asyncio.sleep(self.timing.draw(rng, self.timing.install_s))
        await asyncio.sleep(self.timing.draw(rng, self.timing.reboot_s))
        device.state = UpdateState.COMMITTED
        device.slot = Slot.B if device.slot is Slot.A else Slot.A
        device.version = target
        device.committed_at[str(target)] = time.monotonic()
        device.queue(EventKind.TRIAL_STARTED, EventKind.UPDATE_COMMITTED, version=target)
        await self._flush(device)
        await self._post("heartbeat", device, device.heartbeat())
