"""The remote-session WebSockets (ADR 0074): the device's join and the operator's attach.

Both sides authenticate before the upgrade is accepted (the device with the one device
check every device route uses, the operator with a bearer token or the dashboard's cookie
from the Overlord's own pages, :mod:`overlord.remote.operator`, and the kind's role). The
replica holding the device's socket enforces the idle and maximum-length limits and records
the end; every frame is checked against :mod:`overlord.remote.frames`. That replica also
records a shell (:mod:`overlord.remote.recordings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fleetcore import streams
from fleetcore.wire import API_PREFIX
from overlord.audit.deps import actor_of
from overlord.audit.service import Actor
from overlord.auth.deps import DeviceCaller
from overlord.context import AppContext
from overlord.db import unit_of_work, utcnow
from overlord.devices.schemas import DeviceId
from overlord.remote import claim, frames, recordings, service
from overlord.remote.models import EndReason, RemoteSession, SessionKind, SessionState
from overlord.remote.operator import AttachCaller
from overlord.remote.relay import Hub, Mailbox, Side
from overlord.remote.schemas import SessionId

router = APIRouter(prefix=API_PREFIX, tags=["remote"])
WATCH_S = 1.0
PEER_ENDED = "the other side ended the session"  # already recorded by that side
T = TypeVar("T")


def _ctx(socket: WebSocket) -> AppContext:
    ctx: AppContext = socket.app.state.ctx
    return ctx


def _hub(socket: WebSocket) -> Hub:
    hub: Hub = socket.app.state.remote_hub
    return hub


async def _in_db(ctx: AppContext, work: Callable[..., T], *args: object) -> T:
    def run() -> T:
        with unit_of_work(ctx.sessions) as session:
            return work(session, *args)

    return await run_in_threadpool(run)


class Ended(Exception):
    """Why one side's socket stops: the end reason and its detail."""

    def __init__(self, reason: EndReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


async def _pump_out(socket: WebSocket, box: Mailbox, tape: recordings.Tape | None) -> None:
    while (frame := await box.take()) is not None:
        try:
            if tape is not None:
                await (tape.typed(frame) if isinstance(frame, bytes) else tape.control(frame))
        except frames.FrameError as error:
            raise Ended(EndReason.ERROR, str(error)) from None
        if isinstance(frame, bytes):
            await socket.send_bytes(frame)
        else:
            await socket.send_text(frame)
    raise Ended(EndReason.OPERATOR, PEER_ENDED)


async def _pump_in(
    socket: WebSocket,
    hub: Hub,
    row: RemoteSession,
    side: Side,
    seen: list[float],
    tape: recordings.Tape | None,
    actor: Actor,
) -> None:
    session_id = row.id
    allowed = frames.allowed(side is Side.DEVICE, row.kind is SessionKind.FORWARD)
    ender = EndReason.DEVICE if side is Side.DEVICE else EndReason.OPERATOR
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            raise Ended(ender, f"{side.value} disconnected")
        seen[0] = time.monotonic()
        try:
            if message.get("bytes") is not None:
                data = frames.payload(message["bytes"])
                if tape is not None:
                    await tape.printed(data)
                await hub.send(session_id, side, data)
                continue
            control = frames.control(message.get("text") or "", allowed)
        except frames.FrameError as error:
            raise Ended(EndReason.ERROR, str(error)) from None
        if control["type"] == "close":
            raise Ended(ender, control.get("reason") or f"closed by the {side.value}")
        if control["type"] == "resize":
            await hub.send(session_id, side, frames.text("resize", **control))
        elif control["type"] == "dropped":  # the device's journal reader fell behind
            await hub.send(session_id, side, frames.text("dropped", count=control["count"]))
        elif control["type"] == "exit":  # a shell's status, for the operator's exit code
            await hub.send(session_id, side, frames.text("exit", status=control["status"]))
        elif control["type"] == "ready":  # a forward's device serves streams from now on
            await hub.send(session_id, side, frames.text("ready"))
        elif control["type"] in streams.KINDS:  # audited where it comes in, then relayed
            kind, number, reason = control["type"], control["stream"], control.get("reason", "")
            ctx = _ctx(socket)
            await _in_db(ctx, service.stream_event, actor, row, side.value, kind, number, reason)
            await hub.send(session_id, side, streams.control(kind, number, reason))


async def _watch(
    ctx: AppContext, row: RemoteSession, seen: list[float], tape: recordings.Tape | None
) -> None:
    limits = service.Limits.of(ctx.settings)
    started = recorded = time.monotonic()
    while True:
        await asyncio.sleep(WATCH_S)
        now = time.monotonic()
        if now - started >= limits.max_length_s:
            raise Ended(EndReason.EXPIRED, "expired limit reached")
        if now - seen[0] >= limits.idle_timeout_s:
            raise Ended(EndReason.IDLE, "idle limit reached")
        if tape is not None:
            await _stored(tape)
        if seen[0] != recorded:  # a write only when there was traffic since the last one
            recorded = seen[0]
            await _in_db(ctx, _record_activity, row.id, recorded, now)


async def _stored(tape: recordings.Tape) -> None:
    try:
        await tape.flush()
    except frames.FrameError as error:
        raise Ended(EndReason.ERROR, str(error)) from None


def _record_activity(session: Session, session_id: str, seen: float, now: float) -> None:
    row = session.get(RemoteSession, session_id)
    if row is not None:
        row.last_activity_at = utcnow() - timedelta(seconds=now - seen)


async def _serve(
    socket: WebSocket, row: RemoteSession, side: Side, actor: Actor, *, holds_limits: bool
) -> None:
    ctx, hub = _ctx(socket), _hub(socket)
    try:
        box = hub.open(row.id, side, lossy=row.kind is SessionKind.LOGS)
    except frames.FrameError as refused:
        await _refuse(socket, str(refused))
        return
    seen = [time.monotonic()]
    tape = None
    if holds_limits and row.kind is SessionKind.SHELL:
        tape = recordings.Tape(ctx.sessions, row, ctx.settings.remote_recording_max_bytes)
    tasks = [
        asyncio.create_task(_pump_in(socket, hub, row, side, seen, tape, actor)),
        asyncio.create_task(_pump_out(socket, box, tape)),
    ]
    if holds_limits:
        tasks.append(asyncio.create_task(_watch(ctx, row, seen, tape)))
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in pending:
        task.cancel()
    outcome = _outcome(side, [t.exception() for t in done])
    hub.release(row.id, side)
    if tape is not None:
        try:
            await _stored(tape)
        except Ended as unstored:
            outcome = outcome if isinstance(outcome, Ended) else unstored
    if isinstance(outcome, Ended) and outcome.detail != PEER_ENDED:
        await _in_db(ctx, service.finish, row.id, outcome.reason, outcome.detail)
        kind = "error" if outcome.reason is EndReason.ERROR else "close"
        last = frames.text(kind, reason=outcome.detail)
        await hub.end(row.id, last, side)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await socket.send_text(last)
    elif outcome is not None and not isinstance(outcome, Ended):
        raise outcome
    with contextlib.suppress(RuntimeError):
        await socket.close()


def _outcome(side: Side, errors: list[BaseException | None]) -> BaseException | None:
    """Why the socket's tasks stopped: an :class:`Ended` first. A send to a socket that has
    just gone (the peer's last frames racing its disconnect) is that side's disconnect, so
    the session still ends and the other side hears of it."""
    raised = [error for error in errors if error is not None]
    ended = [error for error in raised if isinstance(error, Ended)]
    if ended:
        return ended[0]
    if raised and isinstance(raised[0], WebSocketDisconnect):
        ender = EndReason.DEVICE if side is Side.DEVICE else EndReason.OPERATOR
        return Ended(ender, f"{side.value} disconnected")
    return raised[0] if raised else None


async def _refuse(socket: WebSocket, reason: str) -> None:
    await socket.send_text(frames.text("error", reason=reason))
    await socket.close()


@router.websocket("/devices/{device_id}/remote/{session_id}")
async def device_join(
    socket: WebSocket, device_id: DeviceId, session_id: SessionId, _caller: DeviceCaller
) -> None:
    """The device's side of a session (its own device credential only)."""
    ctx = _ctx(socket)
    row = await _in_db(ctx, service.join, device_id, session_id, service.Limits.of(ctx.settings))
    await socket.accept()
    await _serve(socket, row, Side.DEVICE, service.OVERLORD, holds_limits=True)


@router.websocket("/remote/{session_id}/attach")
async def operator_attach(socket: WebSocket, session_id: SessionId, caller: AttachCaller) -> None:
    """The operator's side of a session; the kind's role is checked again here."""
    ctx = _ctx(socket)
    actor = actor_of(caller, socket)
    limits = service.Limits.of(ctx.settings)
    row = await _in_db(ctx, service.attachable, actor, session_id, limits)
    # Claimed before the upgrade is accepted: once the operator sees it accepted, its
    # mailbox is in the hub and no frame sent to it is lost.
    held = await run_in_threadpool(claim.take, ctx.engine, row.id)
    try:
        await socket.accept()
        if held is None:  # another socket, on this replica or another, holds the operator
            await _refuse(socket, f"the session's {Side.OPERATOR.value} is already connected")
            return
        if row.kind is SessionKind.FORWARD and row.state is SessionState.ACTIVE:
            # The device joined first: its ``ready`` had no operator to go to.
            await socket.send_text(frames.text("ready"))
        await _serve(socket, row, Side.OPERATOR, actor, holds_limits=False)
    finally:
        if held is not None:
            await run_in_threadpool(held.release)
