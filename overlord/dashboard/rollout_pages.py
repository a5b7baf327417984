"""Dashboard pages for release day: the release list with its new-rollout form, and a
rollout's own page (its targeting, schedule, halt and devices, with its actions)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from fleetcore.boards import Board, family_of
from fleetcore.release import Hardware
from overlord.auth.deps import SESSION_COOKIE
from overlord.auth.models import KeyRole
from overlord.dashboard import csrf, rollout_form
from overlord.dashboard.releases import release_rows
from overlord.dashboard.routes import (
    REFRESH_S,
    DashboardUser,
    back_to,
    dashboard_actor,
    forms_context,
    templates,
)
from overlord.db import unit_of_work
from overlord.deps import Ctx, DbSession
from overlord.errors import Forbidden, RepositoryMissing, RequestError
from overlord.ids import BigRowId
from overlord.rollouts import schedule, targeting
from overlord.rollouts import service as rollouts_service

router = APIRouter(include_in_schema=False)


def _releases_page(
    request: Request,
    user: DashboardUser,
    ctx: Ctx,
    *,
    error: str | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    context = forms_context(request, user) | {
        "error": error,
        "values": values or {},
        "hardware": list(Hardware),
        "boards": [b for b in Board if family_of(b) is not None],
        "refresh_s": REFRESH_S,
    }
    with unit_of_work(ctx.sessions) as session:
        try:
            context["rows"] = release_rows(session, repo_dir=ctx.settings.repo_dir)
        except RepositoryMissing as err:
            context["rows"], context["error"] = [], error or str(err)
        context["groups"] = [g.name for g in rollouts_service.list_groups(session)]
    return templates.TemplateResponse(request, "releases.html", context, status_code=status_code)


@router.get("/dashboard/releases", response_class=HTMLResponse)
def releases(request: Request, user: DashboardUser, ctx: Ctx) -> Response:
    return _releases_page(request, user, ctx, error=request.query_params.get("error"))


@router.post("/dashboard/rollouts")
async def create_rollout(request: Request, user: DashboardUser, ctx: Ctx) -> Response:
    """A rollout from the release page's form; a refusal shows the page again with the
    reason, the values kept, and nothing stored."""
    form = await request.form()
    fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    if len(fields) != len(form.multi_items()):
        return Response("the form takes no files", status_code=422)
    csrf.check(request, request.cookies.get(SESSION_COOKIE, ""), str(form.get("csrf", "")))
    if not user.at_least(KeyRole.OPERATOR):
        raise Forbidden("creating a rollout needs the operator role or higher")
    try:
        spec = rollout_form.spec(fields)
        with unit_of_work(ctx.sessions) as session:
            rollout = rollouts_service.create_rollout(
                session,
                spec=spec,
                repo_dir=ctx.settings.repo_dir,
                actor=dashboard_actor(user, request),
            )
            rollout_id = rollout.id
    except RequestError as err:
        values = rollout_form.echo(dict(fields))
        return _releases_page(
            request, user, ctx, error=str(err), values=values, status_code=err.status_code
        )
    return back_to(f"/dashboard/rollouts/{rollout_id}")


@router.get("/dashboard/rollouts/{rollout_id}", response_class=HTMLResponse)
def rollout_page(
    rollout_id: BigRowId, request: Request, user: DashboardUser, session: DbSession
) -> Response:
    rollout = rollouts_service.get_rollout(session, rollout_id=rollout_id)
    public = rollouts_service.to_public(session, rollout)
    context = forms_context(request, user) | {
        "r": public,
        "targeting": targeting.describe(public.selector),
        "deadline_halt": schedule.halted_by_deadline(public.halt_reason),
        "staged": rollouts_service.staged_devices(session, rollout),
        "updates": rollouts_service.device_updates(session, rollout_id=rollout_id),
        "error": request.query_params.get("error"),
        "refresh_s": REFRESH_S,
    }
    return templates.TemplateResponse(request, "rollout.html", context)
