"""A device's long-poll for a remote session (ADR 0083).

``GET /api/v1/devices/{id}/remote-wait?timeout_s=N`` (the device's own signed credential, as
every device route) answers ``{"pending": true}`` at once when a session is open for the
device, or as soon as one is opened on any replica while it is held; ``{"pending": false}``
after ``timeout_s`` (at most ``remote_wait_max_s``). It is held on the event loop, never in
a worker thread: a held wait is one coroutine and one socket. A device that goes away ends
its wait at once.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from fleetcore.wire import API_PREFIX, RemoteWake
from overlord.auth.deps import DeviceCaller
from overlord.context import AppContext
from overlord.db import unit_of_work
from overlord.devices.schemas import DeviceId
from overlord.errors import DatabaseUnavailable
from overlord.openapi import error_responses
from overlord.remote import service

router = APIRouter(prefix=API_PREFIX, tags=["remote"])


def _pending(ctx: AppContext, device_id: str) -> bool:
    """Whether the device's desired state names a session now; unknown while the database is
    down, which counts as no (nobody can open one then either)."""
    if ctx.database_suspect():
        return False
    try:
        with unit_of_work(ctx.reads) as session:
            named = service.named_session(
                session, device_id, join_timeout_s=ctx.settings.remote_join_timeout_s
            )
    except DatabaseUnavailable:
        ctx.mark_database_down()
        return False
    return named is not None


async def _gone(request: Request) -> None:
    """Returns when the device closes its connection."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.get(
    "/devices/{device_id}/remote-wait",
    response_model=RemoteWake,
    responses=error_responses(403, 429),
)
async def wait_for_session(
    device_id: DeviceId,
    _caller: DeviceCaller,
    request: Request,
    timeout_s: Annotated[int, Query(ge=1, le=300)] = 50,
) -> RemoteWake:
    """Held until a remote session is opened for the device or ``timeout_s`` passes."""
    ctx: AppContext = request.app.state.ctx
    hold = min(timeout_s, ctx.settings.remote_wait_max_s)
    with ctx.remote_waits.watch(device_id) as opened:
        if await run_in_threadpool(_pending, ctx, device_id):
            return RemoteWake(pending=True)
        woken = asyncio.ensure_future(opened.wait())
        gone = asyncio.ensure_future(_gone(request))
        try:
            await asyncio.wait({woken, gone}, timeout=hold, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            gone.cancel()
    return RemoteWake(pending=opened.is_set())
