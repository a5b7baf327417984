"""The device page's terminal: an admin opens a shell session from the page, and the
browser attaches to it with its session cookie (:mod:`overlord.remote.operator`).

Opening is a dashboard action like the others (the form's CSRF token, the admin role, the
device's shell policy, audited as from the dashboard); it answers JSON for the page's
script, which then opens the WebSocket itself.
"""

from __future__ import annotations

from typing import Annotated

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


@router.post("/dashboard/devices/{device_id}/shell")
def open_shell(
    device_id: DeviceId,
    request: Request,
    user: DashboardUser,
    ctx: Ctx,
    session: DbSession,
    form: Annotated[ActionForm, Form()],
) -> JSONResponse:
    """A pending shell session and the path its operator side attaches at."""
    csrf.check(request, request.cookies.get(SESSION_COOKIE, ""), form.csrf)
    row = remote.open_session(
        session,
        dashboard_actor(user, request),
        device_id,
        OpenSession(kind=SessionKind.SHELL),
        remote.Limits.of(ctx.settings),
    )
    return JSONResponse(
        {"session": row.id, "attach": f"{API_PREFIX}/remote/{row.id}/attach"}, status_code=201
    )
