"""The version dashboard: server-rendered pages whose sections refresh by polling fragments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.staticfiles import StaticFiles

from fleetcore.bootloader import build_date
from fleetcore.bounded import NUL_FREE
from overlord.audit import service as audit
from overlord.audit.deps import actor_of
from overlord.audit.models import OBJECT_ID_CHARS, AuditAction, AuditObject, Channel
from overlord.audit.routes import ActorQuery, CursorQuery
from overlord.audit.service import Actor
from overlord.auth import service as auth_service
from overlord.auth.deps import SESSION_COOKIE, client_address
from overlord.auth.models import KeyRole
from overlord.auth.service import Principal
from overlord.dashboard import csrf, service
from overlord.dashboard.schemas import DeviceStatusForm, LoginForm, RolloutActionForm
from overlord.db import unit_of_work
from overlord.deps import Ctx, DbSession
from overlord.devices import service as devices_service
from overlord.devices.models import AdminStatus
from overlord.devices.schemas import DeviceFilter, DeviceId, FleetStatus
from overlord.errors import (
    AuthError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    RequestError,
)
from overlord.ids import BigRowId
from overlord.remote import service as remote_service
from overlord.remote.models import SessionKind
from overlord.rollouts import service as rollouts_service

_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=_HERE / "templates")
templates.env.filters["eeprom_date"] = build_date  # a bootloader version (build timestamp)
static_files = StaticFiles(directory=_HERE / "static")
router = APIRouter(include_in_schema=False)
REFRESH_S = 5
PAGE_SIZE = 50


class LoginRequired(AuthError):
    """No dashboard session: the page handler redirects to the login form."""


def viewer_session(request: Request, ctx: Ctx) -> Principal:
    cookie = request.cookies.get(SESSION_COOKIE)
    principal = None
    if cookie:
        with unit_of_work(ctx.sessions) as session:
            principal = auth_service.resolve_session(session, cookie=cookie)
    if principal is None:
        raise LoginRequired("log in to the dashboard")
    return principal


DashboardUser = Annotated[Principal, Depends(viewer_session)]


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=303)


@router.get("/dashboard/login", response_class=HTMLResponse)
def login_form(request: Request, error: str | None = None) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": error})


@router.post("/dashboard/login")
def login(
    request: Request, ctx: Ctx, session: DbSession, form: Annotated[LoginForm, Form()]
) -> Response:
    if not ctx.anonymous_limiter.allow(client_address(request)):
        raise RateLimited("too many login attempts")
    principal = auth_service.resolve_token(session, token=form.token.strip())
    if principal is None or not principal.at_least(KeyRole.VIEWER):
        _record_failed_login(session, principal, request)
        return templates.TemplateResponse(
            request,
            "login.html",
            {"error": "That token is unknown, revoked, or not an operator token."},
            status_code=401,
        )
    cookie = auth_service.open_session(
        session, principal=principal, ttl_s=ctx.settings.session_ttl_s
    )
    _record_session(session, principal, request, AuditAction.LOGIN)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=ctx.settings.session_ttl_s,
        httponly=True,
        samesite="strict",
        secure=ctx.settings.secure_cookies,
    )
    return response


@router.post("/dashboard/logout")
def logout(request: Request, session: DbSession) -> Response:
    if cookie := request.cookies.get(SESSION_COOKIE):
        principal = auth_service.resolve_session(session, cookie=cookie)
        auth_service.close_session(session, cookie=cookie)
        if principal is not None:
            _record_session(session, principal, request, AuditAction.LOGOUT)
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def dashboard_actor(principal: Principal, request: Request) -> Actor:
    return actor_of(principal, request, via=Channel.DASHBOARD)


def _record_session(
    session: Session, principal: Principal, request: Request, action: AuditAction
) -> None:
    audit.record(
        session,
        dashboard_actor(principal, request),
        action,
        object_type=AuditObject.TOKEN,
        object_id=principal.key_id,
    )


def _record_failed_login(session: Session, principal: Principal | None, request: Request) -> None:
    """Who tried, as far as the token tells (never the token itself), and from where."""
    if principal is None:
        actor = Actor(None, "", None, client_address(request), Channel.DASHBOARD)
        reason = "unknown, revoked or expired token"
    else:
        actor = dashboard_actor(principal, request)
        reason = f"a {principal.role.value} token is not an operator token"
    audit.record(
        session,
        actor,
        AuditAction.LOGIN_FAILED,
        object_type=AuditObject.TOKEN,
        object_id=actor.key_id,
        after={"reason": reason},
    )


def forms_context(request: Request, user: Principal) -> dict[str, object]:
    """What templates need to show the actions this user may take."""
    return {
        "user": user,
        "csrf": csrf.token_for(request.cookies.get(SESSION_COOKIE, "")),
        "can_operate": user.at_least(KeyRole.OPERATOR),
        "can_administer": user.at_least(KeyRole.ADMIN),
    }


def _fleet_context(
    ctx: Ctx, session: DbSession, status: FleetStatus | None, page: int
) -> dict[str, object]:
    devices, total = devices_service.list_devices(
        session,
        filters=DeviceFilter(status=status),
        limit=PAGE_SIZE,
        offset=page * PAGE_SIZE,
        offline_after_s=ctx.settings.offline_after_s,
    )
    return {
        "summary": service.fleet_summary(session, offline_after_s=ctx.settings.offline_after_s),
        "rollouts": rollouts_service.public_rollouts(
            session, rollouts_service.list_rollouts(session)
        ),
        "devices": devices,
        "devices_total": total,
        "status_filter": status.value if status else "",
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "statuses": list(FleetStatus),
        "refresh_s": REFRESH_S,
    }


StatusQuery = Annotated[FleetStatus | None, Query(alias="status")]
PageQuery = Annotated[int, Query(ge=0, le=100_000)]


@router.get("/dashboard", response_class=HTMLResponse)
def index(
    request: Request,
    user: DashboardUser,
    ctx: Ctx,
    session: DbSession,
    status: StatusQuery = None,
    page: PageQuery = 0,
) -> Response:
    context = _fleet_context(ctx, session, status, page) | forms_context(request, user)
    context["error"] = request.query_params.get("error")
    return templates.TemplateResponse(request, "index.html", context)


@router.get("/dashboard/fragments/{name}", response_class=HTMLResponse)
def fragment(
    name: str,
    request: Request,
    user: DashboardUser,
    ctx: Ctx,
    session: DbSession,
    status: StatusQuery = None,
    page: PageQuery = 0,
) -> Response:
    if name not in {"fleet", "rollouts", "devices"}:
        return Response(status_code=404)
    context = _fleet_context(ctx, session, status, page) | forms_context(request, user)
    return templates.TemplateResponse(request, f"_{name}.html", context)


@router.get("/dashboard/devices/{device_id}", response_class=HTMLResponse)
def device(
    device_id: DeviceId, request: Request, user: DashboardUser, ctx: Ctx, session: DbSession
) -> Response:
    page = service.device_page(
        session, device_id=device_id, offline_after_s=ctx.settings.offline_after_s
    )
    context = {"page": page, "refresh_s": REFRESH_S, "statuses": list(AdminStatus)}
    context |= forms_context(request, user)
    # The Overlord's side of the remote policy; the device's fleet.yaml may still refuse.
    row = devices_service.get_device(session, device_id=device_id)
    context["can_shell"] = user.at_least(KeyRole.ADMIN) and remote_service.allowed(
        session, row, SessionKind.SHELL
    )
    context["can_logs"] = remote_service.allowed(session, row, SessionKind.LOGS)
    context["error"] = request.query_params.get("error")
    return templates.TemplateResponse(request, "device.html", context)


@router.get("/dashboard/devices/{device_id}/timeline", response_class=HTMLResponse)
def device_timeline(
    device_id: DeviceId, request: Request, _user: DashboardUser, ctx: Ctx, session: DbSession
) -> Response:
    page = service.device_page(
        session, device_id=device_id, offline_after_s=ctx.settings.offline_after_s
    )
    return templates.TemplateResponse(request, "_device_live.html", {"page": page})


@router.get("/dashboard/audit", response_class=HTMLResponse)
def audit_log(
    request: Request,
    user: DashboardUser,
    session: DbSession,
    actor: ActorQuery = None,
    action: Annotated[str, Query(max_length=32, pattern=NUL_FREE)] = "",
    object_: Annotated[
        str, Query(alias="object", max_length=32 + OBJECT_ID_CHARS, pattern=NUL_FREE)
    ] = "",
    cursor: CursorQuery = None,
) -> Response:
    """The audit log, newest first (operators and admins: it names tokens and addresses)."""
    if not user.at_least(KeyRole.OPERATOR):
        raise Forbidden("the audit log needs the operator role or higher")
    shown = {"actor": actor or "", "action": action, "object": object_}
    context = forms_context(request, user) | shown | {"actions": list(AuditAction), "entries": []}
    try:
        if action and action not in set(AuditAction):
            raise InvalidRequest(f"no action {action!r}")
        object_type, object_id = audit.parse_object(object_)
    except InvalidRequest as err:
        context["error"] = str(err)
        return templates.TemplateResponse(request, "audit.html", context, status_code=422)
    filters = audit.AuditFilter(
        actor=actor or None,
        action=AuditAction(action) if action else None,
        object_type=object_type,
        object_id=object_id,
    )
    entries, older = audit.list_entries(session, filters=filters, cursor=cursor, limit=PAGE_SIZE)
    context["entries"] = entries
    if older is not None:
        query = {k: v for k, v in shown.items() if v} | {"cursor": str(older)}
        context["older"] = f"/dashboard/audit?{urlencode(query)}"
    return templates.TemplateResponse(request, "audit.html", context)


# Operator actions -----------------------------------------------------------------------

_ROLLOUT_ACTIONS = {
    "pause": rollouts_service.pause,
    "resume": rollouts_service.resume,
    "abort": rollouts_service.abort,
}


def back_to(path: str, error: RequestError | None = None) -> RedirectResponse:
    """Post/redirect/get; a refused action comes back as a banner on the page."""
    return RedirectResponse(
        f"{path}?{urlencode({'error': str(error)})}" if error else path, status_code=303
    )


@router.post("/dashboard/rollouts/{rollout_id}/{action}")
def rollout_action(
    rollout_id: BigRowId,
    action: str,
    request: Request,
    user: DashboardUser,
    ctx: Ctx,
    form: Annotated[RolloutActionForm, Form()],
) -> Response:
    verb = _ROLLOUT_ACTIONS.get(action)
    if verb is None:
        return Response(status_code=404)
    csrf.check(request, request.cookies.get(SESSION_COOKIE, ""), form.csrf)
    if not user.at_least(KeyRole.OPERATOR):
        raise Forbidden("rollout actions need the operator role or higher")
    page = "/dashboard" if form.back == "fleet" else f"/dashboard/rollouts/{rollout_id}"
    try:
        with unit_of_work(ctx.sessions) as session:
            verb(session, rollout_id=rollout_id, actor=dashboard_actor(user, request))
    except (Conflict, NotFound) as err:
        return back_to(page, err)
    return back_to(page)


@router.post("/dashboard/devices/{device_id}/status")
def device_status_action(
    device_id: DeviceId,
    request: Request,
    user: DashboardUser,
    ctx: Ctx,
    form: Annotated[DeviceStatusForm, Form()],
) -> Response:
    csrf.check(request, request.cookies.get(SESSION_COOKIE, ""), form.csrf)
    if not user.at_least(KeyRole.ADMIN):
        raise Forbidden("setting a device's admin status needs the admin role")
    with unit_of_work(ctx.sessions) as session:
        devices_service.set_admin_status(
            session,
            device_id=device_id,
            status=form.status,
            actor=dashboard_actor(user, request),
        )
    ctx.desired.drop(device_id)
    return back_to(f"/dashboard/devices/{device_id}")
