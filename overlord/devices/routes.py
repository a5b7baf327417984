"""Device endpoints: the fixed device wire API plus operator queries and controls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from fleetcore.boards import Board
from fleetcore.bounded import NUL_FREE
from fleetcore.version import Version
from fleetcore.wire import (
    API_PREFIX,
    EventAck,
    EventBatch,
    Heartbeat,
    RegisterRequest,
    RegisterResponse,
    RekeyRequest,
)
from overlord.audit.deps import AdminActor, OperatorActor, actor_of
from overlord.auth.deps import DeviceCaller, Viewer, client_address
from overlord.context import AppContext
from overlord.db import unit_of_work, utcnow
from overlord.deps import Ctx, DbSession
from overlord.devices import service
from overlord.devices.schemas import (
    CachedDesiredState,
    DeviceAttributesUpdate,
    DeviceFilter,
    DeviceId,
    DevicePage,
    DevicePublic,
    DeviceStatusUpdate,
    FleetStatus,
    LabelCount,
)
from overlord.errors import DatabaseUnavailable, RateLimited
from overlord.events import service as events_service
from overlord.events.schemas import DeviceEventPage, DeviceEventPublic
from overlord.openapi import error_responses
from overlord.rollouts import service as rollouts_service

router = APIRouter(prefix=f"{API_PREFIX}/devices", tags=["devices"])
sd_router = APIRouter(prefix=f"{API_PREFIX}/sd", tags=["devices"])
labels_router = APIRouter(prefix=API_PREFIX, tags=["devices"])


@router.post(
    "/register",
    response_model=RegisterResponse,
    status_code=status.HTTP_201_CREATED,
    # The enrollment token travels in the body, so no bearer token; it is checked all the same.
    responses=error_responses(401, 403, 429),
)
def register(
    body: RegisterRequest, request: Request, ctx: Ctx, session: DbSession
) -> RegisterResponse:
    if not ctx.anonymous_limiter.allow(client_address(request)):
        raise RateLimited("too many enrolment attempts from this address")
    return service.register(
        session, request=body, require_signatures=ctx.settings.require_device_signatures
    )


@router.get(
    "/{device_id}/desired-state",
    responses={200: {"model": None}, 304: {"description": "unchanged since If-None-Match"}},
)
async def desired_state(
    device_id: DeviceId,
    _caller: DeviceCaller,
    request: Request,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """What the device should run, with an ETag; ``If-None-Match`` answers 304.

    Answers come from this replica's cache, kept in step with other replicas (see
    ``overlord.invalidation``), so an unchanged device is answered without a query (the cheap
    304 path, usually answered by ``overlord.fastpath`` before it gets here). While the
    database is down the cache answers whatever its age.
    """
    ctx: AppContext = request.app.state.ctx
    state = ctx.desired.get(device_id, max_age_s=ctx.settings.cache_ttl_s)
    if state is None:
        state = await run_in_threadpool(_load_desired, ctx, device_id)
    headers = {"ETag": state.etag, "Cache-Control": "no-cache"}
    if state.matches(if_none_match):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content=state.body, media_type="application/json", headers=headers)


def _load_desired(ctx: Ctx, device_id: str) -> CachedDesiredState:
    if not ctx.database_suspect():
        generation = ctx.desired.generation
        try:
            with unit_of_work(ctx.reads) as session:
                state = service.desired_state(
                    session,
                    device_id=device_id,
                    default_poll_interval_s=ctx.settings.poll_interval_s,
                    sealer=ctx.sealer,
                    remote_join_timeout_s=ctx.settings.remote_join_timeout_s,
                )
        except DatabaseUnavailable:
            ctx.mark_database_down()
        else:
            ctx.desired.put(device_id, state, generation=generation)
            return state
    stale = ctx.desired.get(device_id, max_age_s=None)
    if stale is None:
        raise DatabaseUnavailable("the database is unreachable and this device is not cached")
    return stale


@router.post(
    "/{device_id}/key",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 429),
)
def rekey(
    device_id: DeviceId, body: RekeyRequest, caller: DeviceCaller, ctx: Ctx, request: Request
) -> Response:
    """The device's new key, proved by the old one: this request is signed with it."""
    with unit_of_work(ctx.sessions) as session:
        service.rekey(
            session, caller=caller, actor=actor_of(caller, request), public_key=body.public_key
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{device_id}/rotate-credential",
    response_model=DevicePublic,
    responses=error_responses(401, 403, 404),
)
def rotate_credential(
    device_id: DeviceId, actor: AdminActor, ctx: Ctx, session: DbSession
) -> DevicePublic:
    """Revoke the device's credential and unbind its key; it must enrol again."""
    device = service.rotate_credential(session, device_id=device_id, actor=actor)
    return service.to_public(device, now=utcnow(), offline_after_s=ctx.settings.offline_after_s)


@router.post("/{device_id}/heartbeat", status_code=status.HTTP_204_NO_CONTENT)
async def heartbeat(
    device_id: DeviceId, body: Heartbeat, _caller: DeviceCaller, ctx: Ctx, request: Request
) -> Response:
    screened = ctx.exporters.screen(device_id, body, client_host=client_address(request))
    await ctx.heartbeats.submit(device_id, screened)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{device_id}/events", response_model=EventAck)
def post_events(device_id: DeviceId, body: EventBatch, _caller: DeviceCaller, ctx: Ctx) -> EventAck:
    with unit_of_work(ctx.sessions) as session:
        device = service.get_device(session, device_id=device_id)
        ack, fresh = events_service.ingest(session, device=device, events=body.events)
        rollouts_service.observe_events(session, device=device, events=fresh)
    for event in fresh:
        counted = events_service.OUTCOME_OF_EVENT.get(event.kind)
        if counted is not None:
            ctx.metrics.update_outcomes.labels(kind=counted[0], outcome=counted[1]).inc()
    return ack


@labels_router.get("/labels", response_model=list[LabelCount])
def list_labels(_caller: Viewer, session: DbSession) -> list[LabelCount]:
    """Labels in use across the fleet (set them with PATCH /devices/{id})."""
    return service.label_counts(session)


@sd_router.get("/prometheus")
def prometheus_targets(_caller: Viewer, session: DbSession) -> list[dict[str, object]]:
    """Prometheus HTTP service discovery of the devices' node exporters (ops stack)."""
    return service.scrape_targets(session)


@router.get("", response_model=DevicePage)
def list_devices(
    _caller: Viewer,
    ctx: Ctx,
    session: DbSession,
    status_: Annotated[FleetStatus | None, Query(alias="status")] = None,
    image_version: Annotated[str | None, Query(max_length=40, pattern=NUL_FREE)] = None,
    role: Annotated[str | None, Query(max_length=64, pattern=NUL_FREE)] = None,
    label: Annotated[
        str | None, Query(max_length=128, pattern=NUL_FREE, description="key=value")
    ] = None,
    group: Annotated[str | None, Query(max_length=64, pattern=NUL_FREE)] = None,
    board: Annotated[
        Board | None, Query(description="the board its last heartbeat reported")
    ] = None,
    bootloader_below: Annotated[
        Version | None,
        Query(
            description="a bootloader release version (year.month.day.second): devices whose "
            "bootloader is older, or not reported"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> DevicePage:
    items, total = service.list_devices(
        session,
        filters=DeviceFilter(
            status=status_,
            image_version=image_version,
            role=role,
            label=label,
            group=group,
            board=board.value if board else None,
            bootloader_below=bootloader_below,
        ),
        limit=limit,
        offset=offset,
        offline_after_s=ctx.settings.offline_after_s,
    )
    return DevicePage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{device_id}", response_model=DevicePublic)
def get_device(device_id: DeviceId, _caller: Viewer, ctx: Ctx, session: DbSession) -> DevicePublic:
    device = service.get_device(session, device_id=device_id)
    return service.to_public(
        device,
        now=utcnow(),
        offline_after_s=ctx.settings.offline_after_s,
        board=service.last_board(session, device_id=device_id),
        bootloader=service.last_bootloader(session, device_id=device_id),
        held_back=rollouts_service.holds(session, device=device),
    )


@router.patch("/{device_id}", response_model=DevicePublic)
def update_device(
    device_id: DeviceId,
    body: DeviceAttributesUpdate,
    actor: OperatorActor,
    ctx: Ctx,
    session: DbSession,
) -> DevicePublic:
    device = service.update_attributes(session, device_id=device_id, update=body, actor=actor)
    ctx.desired.drop(device_id)
    return service.to_public(device, now=utcnow(), offline_after_s=ctx.settings.offline_after_s)


@router.patch("/{device_id}/status", response_model=DevicePublic)
def set_status(
    device_id: DeviceId,
    body: DeviceStatusUpdate,
    actor: AdminActor,
    ctx: Ctx,
    session: DbSession,
) -> DevicePublic:
    device = service.set_admin_status(session, device_id=device_id, status=body.status, actor=actor)
    ctx.desired.drop(device_id)
    return service.to_public(device, now=utcnow(), offline_after_s=ctx.settings.offline_after_s)


@router.get("/{device_id}/events", response_model=DeviceEventPage)
def list_events(
    device_id: DeviceId,
    _caller: Viewer,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> DeviceEventPage:
    service.get_device(session, device_id=device_id)
    rows, total = events_service.list_events(
        session, device_id=device_id, limit=limit, offset=offset
    )
    return DeviceEventPage(
        items=[DeviceEventPublic.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )
