"""The device page's remote sessions: an admin opens a shell, anyone logged in a live tail
of the device's journal, and the browser attaches to it with its session cookie
(:mod:`overlord.remote.operator`).

Opening is a dashboard action like the others (the form's CSRF token, the kind's role, the
device's policy, audited as from the dashboard); it answers JSON for the page's script,
which then opens the WebSocket itself.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from fleetcore.wire import API_PREFIX
from overlord.auth.deps import SESSION_COOKIE
from overlord.dashboard import csrf
from overlord.dashboard.routes import DashboardUser, dashboard_actor
from overlord.dashboard.schemas import ActionForm
from overlord.deps import Ctx, DbSession
from overlord.devices.schemas import DeviceId
from overlord.remote import service as remote
from overlord.remote.models import SessionKind
from overlord.remote.schemas import OpenSession

router = APIRouter(include_in_schema=False)
# What the page opens: a shell, or the journal's last lines and what follows.
KINDS = {
    "shell": OpenSession(kind=SessionKind.SHELL),
    "logs": OpenSession(kind=SessionKind.LOGS, lines=100),
}


@router.post("/dashboard/devices/{device_id}/remote/{kind}")
def open_remote(
    device_id: DeviceId,
    kind: Literal["shell", "logs"],
    request: Request,
    user: DashboardUser,
    ctx: Ctx,
    session: DbSession,
    form: Annotated[ActionForm, Form()],
) -> JSONResponse:
    """A pending session of ``kind`` and the path its operator side attaches at."""
    csrf.check(request, request.cookies.get(SESSION_COOKIE, ""), form.csrf)
    row = remote.open_session(
        session,
        dashboard_actor(user, request),
        device_id,
        KINDS[kind],
        remote.Limits.of(ctx.settings),
    )
    return JSONResponse(
        {"session": row.id, "attach": f"{API_PREFIX}/remote/{row.id}/attach"}, status_code=201
    )
