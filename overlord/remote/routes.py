"""The remote-session broker API: open, list, read and end (ADR 0074), and a shell's
recording.

Opening needs the role of the kind (logs: viewer; shell and forward: admin) and the device's
configuration allowing it; ending needs the session's opener or an admin; a recording is
for admins. All three are audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from fleetcore.wire import API_PREFIX
from overlord.audit.deps import actor_of
from overlord.auth.deps import Admin, Viewer
from overlord.deps import Ctx, DbSession
from overlord.devices.schemas import DeviceId
from overlord.openapi import error_responses
from overlord.remote import asciicast, frames, recordings, service
from overlord.remote.relay import Hub
from overlord.remote.schemas import OpenSession, RemoteSessionPublic, SessionId

router = APIRouter(prefix=API_PREFIX, tags=["remote"])


def _limits(ctx: Ctx) -> service.Limits:
    return service.Limits.of(ctx.settings)


@router.post(
    "/devices/{device_id}/remote-sessions",
    response_model=RemoteSessionPublic,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(403, 404, 409),
)
def open_session(
    device_id: DeviceId,
    body: OpenSession,
    caller: Viewer,
    request: Request,
    ctx: Ctx,
    session: DbSession,
) -> RemoteSessionPublic:
    """A pending session; the device joins it on its next desired-state poll, at once when
    it holds a long-poll for it (ADR 0083)."""
    row = service.open_session(session, actor_of(caller, request), device_id, body, _limits(ctx))
    opened = RemoteSessionPublic.model_validate(row)
    session.commit()  # the device must find the session when its wait returns
    # This replica's own waits, without waiting for the change log (SQLite has no NOTIFY;
    # on PostgreSQL every replica, this one included, also hears the commit's notification).
    ctx.desired.drop(device_id)
    ctx.remote_waits.wake(device_id)
    return opened


@router.get("/devices/{device_id}/remote-sessions", response_model=list[RemoteSessionPublic])
def list_sessions(
    device_id: DeviceId,
    _caller: Viewer,
    ctx: Ctx,
    session: DbSession,
    open_only: Annotated[bool, Query(alias="open")] = False,
) -> list[RemoteSessionPublic]:
    """The device's sessions, newest first; ``open=true`` for pending and active ones."""
    rows = service.list_sessions(session, device_id, _limits(ctx), open_only=open_only)
    return [RemoteSessionPublic.model_validate(row) for row in rows]


@router.get("/remote-sessions/{session_id}", response_model=RemoteSessionPublic)
def get_session(
    session_id: SessionId, _caller: Viewer, ctx: Ctx, session: DbSession
) -> RemoteSessionPublic:
    return RemoteSessionPublic.model_validate(
        service.get_session(session, session_id, _limits(ctx))
    )


@router.delete(
    "/remote-sessions/{session_id}",
    response_model=RemoteSessionPublic,
    responses=error_responses(403, 404, 409),
)
def end_session(
    session_id: SessionId,
    caller: Viewer,
    request: Request,
    ctx: Ctx,
    session: DbSession,
) -> RemoteSessionPublic:
    """Ends the session now (its opener or an admin); its sockets close on every replica."""
    actor = actor_of(caller, request)
    row = service.end_session(session, actor, session_id, _limits(ctx))
    session.commit()  # recorded before the sockets hear of it: their replicas record nothing
    hub: Hub = request.app.state.remote_hub
    hub.end_everywhere(row.id, frames.text("close", reason=f"ended by {actor.name}"))
    return RemoteSessionPublic.model_validate(row)


@router.get(
    "/remote-sessions/{session_id}/recording",
    response_class=Response,
    responses={
        200: {"content": {asciicast.MEDIA_TYPE: {}}, "description": "asciicast v2"},
        **error_responses(403, 404),
    },
)
def get_recording(
    session_id: SessionId, caller: Admin, request: Request, session: DbSession
) -> Response:
    """A shell session's recording in asciicast v2 (admins; so far, while it runs)."""
    cast = recordings.read(session, actor_of(caller, request), session_id)
    disposition = f'attachment; filename="{session_id}.cast"'
    return Response(
        cast, media_type=asciicast.MEDIA_TYPE, headers={"Content-Disposition": disposition}
    )
