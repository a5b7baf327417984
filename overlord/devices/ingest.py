"""Group commit for heartbeats: concurrent requests share one transaction.

A heartbeat is *acknowledged* (204) only after the transaction holding it committed; until
then the device keeps it and resends it if the request fails. So nothing acknowledged can
be lost, whatever happens to this process, and there is nothing to flush at shutdown except
batches whose requests are still waiting (``close`` lets them finish).

One writer task per event loop (uvicorn worker) takes everything queued when it wakes (up
to ``MAX_BATCH``) and writes it while the next batch gathers: on PostgreSQL as one
autocommit statement from the event loop itself (``devices.pgbatch``, one round trip), on
SQLite in one ORM transaction on a thread. On PostgreSQL, the few devices of a batch that
are in a rollout are then observed by the rollout engine in an ORM transaction of its own,
after the writer has moved on: their requests wait for it, the others are answered at once
(a stage's admission no longer slows the whole fleet's heartbeats). The queue is bounded
(``heartbeat_queue_max``): beyond it a request is refused with 503 and retried by the
device, instead of latency growing without limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fleetcore.wire import Heartbeat
from overlord.db import unit_of_work, utcnow
from overlord.devices import heartbeats, service
from overlord.devices.pgbatch import BatchConnections
from overlord.errors import NotFound, Overloaded
from overlord.rollouts import service as rollouts_service

if TYPE_CHECKING:
    from overlord.context import AppContext

MAX_BATCH = 500
_ATTEMPTS = 3
WRITERS = 2  # batches committing at once per worker: one gathers while another commits

_Item = tuple[str, Heartbeat, "asyncio.Future[None]"]

log = logging.getLogger(__name__)


class HeartbeatWriter:
    """One per event loop (uvicorn worker); started on first use."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._queue: asyncio.Queue[_Item] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._pg: BatchConnections | None = None
        self._observers: set[asyncio.Task[None]] = set()
        self._observe_slots: asyncio.Semaphore | None = None

    async def submit(self, device_id: str, heartbeat: Heartbeat) -> None:
        """Returns once the heartbeat is committed; raises what stopped its batch."""
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:
            self._loop, self._queue = loop, asyncio.Queue()
            self._observe_slots = asyncio.Semaphore(WRITERS)
            if self._ctx.engine.dialect.name == "postgresql":
                self._pg = BatchConnections(self._ctx.engine)
            self._task = loop.create_task(self._run(self._queue))
        if self._queue.qsize() >= self._ctx.settings.heartbeat_queue_max:
            raise Overloaded("too many heartbeats waiting to be stored; retry shortly")
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put_nowait((device_id, heartbeat, done))
        await done

    async def close(self) -> None:
        """Store what is queued (its requests are still waiting), then stop the writer."""
        if self._queue is not None and self._task is not None:
            await self._queue.join()
            self._task.cancel()
            self._queue = self._task = None
        if self._pg is not None:
            await self._pg.close()

    async def _run(self, queue: asyncio.Queue[_Item]) -> None:
        slots = asyncio.Semaphore(WRITERS)
        running: set[asyncio.Task[None]] = set()
        while True:
            await slots.acquire()
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            task = asyncio.get_running_loop().create_task(self._store_batch(queue, batch))
            running.add(task)
            task.add_done_callback(running.discard)
            task.add_done_callback(lambda _t: slots.release())

    async def _store_batch(self, queue: asyncio.Queue[_Item], batch: list[_Item]) -> None:
        observe: list[_Item] = []
        try:
            observe = await self._store(batch)
        finally:
            for _ in range(len(batch) - len(observe)):
                queue.task_done()
        if observe:
            # The rollout engine's part runs once this writer slot is free again, so the
            # devices in a rollout never hold back the rest of the fleet's heartbeats.
            task = asyncio.get_running_loop().create_task(self._observe_batch(queue, observe))
            self._observers.add(task)
            task.add_done_callback(self._observers.discard)

    async def _store(self, batch: list[_Item]) -> list[_Item]:
        """Store a batch and answer its requests; returns those still to be observed by the
        rollout engine (PostgreSQL: devices with an open update), which wait for that."""
        items = [(d, hb) for d, hb, _ in batch]
        try:
            missing, opened = await self._write(items)
        except Exception as err:
            if len(batch) > 1:
                # One device's row must not fail the others' (a value the database refuses,
                # for instance): each is stored on its own, and only the bad one fails.
                log.warning(
                    "heartbeat batch of %d failed (%s); storing one by one",
                    len(batch),
                    type(err).__name__,
                )
                observe = []
                for item in batch:
                    observe += await self._store([item])
                return observe
            for _d, _hb, done in batch:
                if not done.done():
                    done.set_exception(err)
            return []
        observe = [item for item in batch if item[0] in opened and not item[2].done()]
        for device_id, _hb, done in batch:
            if done.done() or device_id in opened:
                continue
            if device_id in missing:
                done.set_exception(NotFound(f"no device {device_id}"))
            else:
                done.set_result(None)
        self._ctx.metrics.heartbeats.inc(sum(d not in missing for d, _hb, _done in batch))
        return observe

    async def _observe_batch(self, queue: asyncio.Queue[_Item], batch: list[_Item]) -> None:
        """The rollout engine's part for devices with an open update, in a transaction of
        its own after the batch's: it reads the rows just stored and is idempotent (a device
        whose request fails here resends, and is stored and observed again)."""
        assert self._observe_slots is not None
        try:
            items = [(d, hb) for d, hb, _ in batch]
            try:
                async with self._observe_slots:  # as many at once as batches being written
                    await run_in_threadpool(self._observe, items, {d for d, _hb in items})
            except Exception as err:
                for _d, _hb, done in batch:
                    if not done.done():
                        done.set_exception(err)
                return
            for _d, _hb, done in batch:
                if not done.done():
                    done.set_result(None)
        finally:
            for _ in batch:
                queue.task_done()

    async def _write(self, items: list[tuple[str, Heartbeat]]) -> tuple[set[str], set[str]]:
        """Store one batch; returns the unknown device ids and the ids still to observe."""
        if self._pg is None:
            return await run_in_threadpool(self._write_portable, items), set()
        found = await self._write_postgresql(items)
        open_updates, missing = heartbeats.opened_and_missing(items, found)
        return missing, open_updates

    async def _write_postgresql(self, items: list[tuple[str, Heartbeat]]) -> dict[str, bool]:
        """A batch PostgreSQL rolled back (a deadlock with the rollout engine, SQLSTATE
        class 40) is retried, as the server asks."""
        assert self._pg is not None
        attempt = 1
        while True:
            try:
                return await self._pg.store(items, utcnow())
            except psycopg.Error as err:
                if not str(err.sqlstate or "").startswith("40") or attempt >= _ATTEMPTS:
                    raise
                attempt += 1

    def _observe(self, items: list[tuple[str, Heartbeat]], open_updates: set[str]) -> None:
        with unit_of_work(self._ctx.sessions) as session:
            _observe_in(session, items, open_updates)

    def _write_portable(self, items: list[tuple[str, Heartbeat]]) -> set[str]:
        with unit_of_work(self._ctx.sessions) as session:
            open_updates, missing = heartbeats.record(session, items=items)
            _observe_in(session, items, open_updates)
        return missing


def _observe_in(
    session: Session, items: list[tuple[str, Heartbeat]], open_updates: set[str]
) -> None:
    for device_id, heartbeat in items:
        if device_id in open_updates:
            device = service.get_device(session, device_id=device_id)
            rollouts_service.observe_heartbeat(session, device=device, heartbeat=heartbeat)
