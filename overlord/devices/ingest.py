"""Group commit for heartbeats: concurrent requests share one transaction.

Each request still answers only after its heartbeat is committed (or with the error that
stopped the batch), so a 204 always means stored. Batching turns N round trips and N thread
hops into a few, which is what lets two workers keep up with a large fleet.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from fleetcore.wire import Heartbeat
from overlord.db import unit_of_work
from overlord.devices import service
from overlord.errors import NotFound
from overlord.rollouts import service as rollouts_service

if TYPE_CHECKING:
    from overlord.context import AppContext

MAX_BATCH = 500

_Item = tuple[str, Heartbeat, "asyncio.Future[None]"]


class HeartbeatWriter:
    """One per event loop (uvicorn worker); started on first use."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._queue: asyncio.Queue[_Item] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, device_id: str, heartbeat: Heartbeat) -> None:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._run(self._queue))
        done: asyncio.Future[None] = loop.create_future()
        await self._queue.put((device_id, heartbeat, done))
        await done

    async def _run(self, queue: asyncio.Queue[_Item]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                missing = await run_in_threadpool(self._write, [(d, hb) for d, hb, _ in batch])
            except Exception as err:  # the whole batch failed: every waiter gets the error
                for _d, _hb, done in batch:
                    if not done.done():
                        done.set_exception(err)
                continue
            for device_id, _hb, done in batch:
                if done.done():
                    continue
                if device_id in missing:
                    done.set_exception(NotFound(f"no device {device_id}"))
                else:
                    done.set_result(None)
            self._ctx.metrics.heartbeats.inc(len(batch) - len(missing))

    def _write(self, items: list[tuple[str, Heartbeat]]) -> set[str]:
        with unit_of_work(self._ctx.sessions) as session:
            open_updates, missing = service.record_heartbeats(session, items=items)
            for device_id, heartbeat in items:
                if device_id in open_updates:
                    device = service.get_device(session, device_id=device_id)
                    rollouts_service.observe_heartbeat(session, device=device, heartbeat=heartbeat)
        return missing
