"""The ASGI application: routers of every domain, error mapping, metrics, static TUF files."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetcore.wire import TUF_PREFIX
from overlord import __version__, openapi
from overlord.audit.routes import router as audit_router
from overlord.auth.routes import router as auth_router
from overlord.configvars.routes import router as config_router
from overlord.context import AppContext
from overlord.dashboard.rollout_pages import router as dashboard_rollouts_router
from overlord.dashboard.routes import LoginRequired
from overlord.dashboard.routes import router as dashboard_router
from overlord.dashboard.routes import static_files as dashboard_static
from overlord.dashboard.terminal import router as dashboard_terminal_router
from overlord.db import is_disconnect, unit_of_work
from overlord.deps import Ctx
from overlord.devices.routes import labels_router, sd_router
from overlord.devices.routes import router as devices_router
from overlord.errors import RETRY_HINT, DatabaseUnavailable, RequestError, error_body
from overlord.events.routes import router as events_router
from overlord.fastpath import FastPath
from overlord.jsonbody import StrictJson
from overlord.limits import BodyLimit
from overlord.metrics.bounded import method_label
from overlord.metrics.collector import FleetCollector
from overlord.releases.routes import router as releases_router
from overlord.remote.relay import Hub, start_relay
from overlord.remote.routes import router as remote_router
from overlord.remote.waiting import router as remote_wait_router
from overlord.remote.ws import router as remote_ws_router
from overlord.requestlog import RequestLog
from overlord.rollouts.routes import router as rollouts_router
from overlord.scheduler import Scheduler
from overlord.settings import Settings
from overlord.tuf.routes import RepositoryFiles
from overlord.tuf.routes import router as tuf_router

log = logging.getLogger(__name__)


class _LatencyMiddleware:
    """Observes fleet_http_request_duration_seconds by route template, not raw path."""

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template is None:
                path: str = scope.get("path", "")
                template = TUF_PREFIX if path.startswith(TUF_PREFIX + "/") else "unmatched"
            self.ctx.metrics.request_duration.labels(
                method=method_label(scope["method"]), route=template, status=str(status)
            ).observe(time.perf_counter() - start)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, err: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer quotes the input: a 100 MB field came back as a 419 MB 422,
        # and a token in a bad body would be echoed. The field and the rule are enough.
        details = [
            {
                "type": str(item.get("type", ""))[:64],
                "loc": [str(part)[:64] for part in item.get("loc", ())][:8],
                "msg": str(item.get("msg", ""))[:200],
            }
            for item in err.errors()[:20]
        ]
        return JSONResponse({"detail": details}, status_code=422)

    @app.exception_handler(RequestError)
    async def request_error(_request: Request, err: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status_code == 401 else {}
        if err.status_code == 503:
            headers["Retry-After"] = "5"
        return JSONResponse(error_body(err, err.hint), status_code=err.status_code, headers=headers)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _err: LoginRequired) -> Response:
        if request.url.path.startswith("/dashboard/fragments/") or request.url.path.endswith(
            "/timeline"
        ):
            return Response(status_code=401)
        return RedirectResponse("/dashboard/login", status_code=303)

    @app.exception_handler(DatabaseUnavailable)
    async def database_down(request: Request, err: DatabaseUnavailable) -> JSONResponse:
        request.app.state.ctx.mark_database_down()
        return JSONResponse(
            error_body(err, RETRY_HINT),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(IntegrityError)
    async def integrity(request: Request, err: IntegrityError) -> JSONResponse:
        # The database's own text may quote row values; the constraint's kind is enough here.
        log.warning(
            "%s %s: integrity error (%s), answered 409",
            request.method,
            request.url.path[:256],
            type(err.orig).__name__,
        )
        return JSONResponse({"detail": "conflicting concurrent change, retry"}, status_code=409)

    @app.exception_handler(DBAPIError)
    async def dbapi(request: Request, err: DBAPIError) -> JSONResponse:
        if not is_disconnect(err):
            raise err
        request.app.state.ctx.mark_database_down()
        return JSONResponse(
            {"detail": "the database is unreachable"}, status_code=503, headers={"Retry-After": "5"}
        )


class OverlordApp(FastAPI):
    """FastAPI with :mod:`overlord.fastpath` in front of everything, even the middleware."""

    fast_path: FastPath | None = None

    body_limit: BodyLimit | None = None

    strict_json: StrictJson | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Outermost: refusals by the body limit and answers of the fast path are logged too.
        self._logged = RequestLog(self._limited)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._logged(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.body_limit is not None:
            # The limit wraps everything else (its app is _handle): it sees each request
            # before the fast path, a middleware or a route reads the body.
            await self.body_limit(scope, receive, send)
            return
        await self._handle(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.strict_json is not None and scope["type"] == "http":
            checked = await self.strict_json.check(scope, receive, send)
            if checked is None:
                return
            receive = checked
        if self.fast_path is not None and scope["type"] == "http":
            handed_on = await self.fast_path.handle(scope, receive, send)
            if handed_on is None:
                return
            receive = handed_on
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    ctx = AppContext.create(settings, engine=engine)
    ctx.metrics.registry.register(FleetCollector(sessions=ctx.sessions, settings=settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        scheduler = Scheduler(ctx) if settings.run_scheduler else None
        if scheduler is not None:
            scheduler.start()
        ctx.keeper.start()
        relay = start_relay(_app.state.remote_hub, ctx.engine)
        try:
            yield
        finally:
            await ctx.heartbeats.close()
            ctx.keeper.stop()
            if relay is not None:
                relay.stop()
            if scheduler is not None:
                scheduler.stop()
            ctx.engine.dispose()

    app = OverlordApp(
        title="Metrica Fleet Overlord",
        version=__version__,
        lifespan=lifespan,
        description="Device registry, staged rollouts and the TUF release repository.",
    )
    app.state.ctx = ctx
    app.state.remote_hub = Hub()
    if settings.fast_path:
        app.fast_path = FastPath(ctx)
    app.body_limit = BodyLimit(
        app._handle,
        json_bytes=settings.max_json_bytes,
        publish_bytes=settings.max_publish_bytes,
    )
    app.strict_json = StrictJson(max_bytes=settings.max_json_bytes)
    openapi.install(app)
    _install_error_handlers(app)
    for router in (
        devices_router,
        sd_router,
        labels_router,
        rollouts_router,
        releases_router,
        events_router,
        auth_router,
        audit_router,
        config_router,
        remote_router,
        remote_wait_router,
        remote_ws_router,
        tuf_router,
        dashboard_router,
        dashboard_rollouts_router,
        dashboard_terminal_router,
    ):
        app.include_router(router)

    @app.get("/health", tags=["meta"])
    def health(ctx: Ctx) -> dict[str, str]:
        """Liveness plus database reachability (the API keeps serving cached reads without it)."""
        try:
            with unit_of_work(ctx.sessions) as session:
                session.execute(text("SELECT 1"))
            database = "ok"
        except DatabaseUnavailable:
            database = "unreachable"
        return {
            "status": "ok" if database == "ok" else "degraded",
            "database": database,
            "version": __version__,
        }

    @app.get("/metrics", tags=["meta"], response_class=Response)
    def metrics(ctx: Ctx) -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.mount(TUF_PREFIX, RepositoryFiles(directory=settings.repo_dir, check_dir=False), name="tuf")
    app.mount("/static", dashboard_static, name="static")
    app.add_middleware(_LatencyMiddleware, ctx=ctx)
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory for multi-worker serving."""
    return create_app()
