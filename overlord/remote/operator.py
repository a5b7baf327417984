"""Who attaches to a session: a bearer token (``fleetctl``), or the dashboard's session
cookie from one of the Overlord's own pages (the device page's terminal).

A browser cannot put an ``Authorization`` header on a WebSocket, so the dashboard's
terminal authenticates with its session cookie. A browser sends that cookie with a
WebSocket handshake from any same-site page (``SameSite=Strict`` does not separate sibling
host names, and CORS does not cover WebSockets): cross-site WebSocket hijacking. So a
cookie counts only when the handshake's ``Origin`` names this Overlord's host; a handshake
without ``Origin`` is not from a browser page and must bring a bearer token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from overlord.auth import service as auth_service
from overlord.auth.deps import SESSION_COOKIE, authenticate, bearer_token
from overlord.auth.origin import names_host
from overlord.auth.service import Principal
from overlord.context import AppContext
from overlord.db import unit_of_work
from overlord.errors import Forbidden


def _session_principal(ctx: AppContext, cookie: str) -> Principal | None:
    with unit_of_work(ctx.sessions) as session:
        return auth_service.resolve_session(session, cookie=cookie)


async def attach_caller(connection: HTTPConnection) -> Principal:
    """The bearer token's key if there is one, else the dashboard session's, from this site."""
    cookie = connection.cookies.get(SESSION_COOKIE)
    if bearer_token(connection) is not None or not cookie:
        return await authenticate(connection)
    origin = connection.headers.get("origin")
    if origin is None:
        raise Forbidden("a dashboard session attaches only from the dashboard's pages (no Origin)")
    if not names_host(origin, connection.url.hostname):
        raise Forbidden("this WebSocket was opened by a page of another site")
    ctx: AppContext = connection.app.state.ctx
    principal = await run_in_threadpool(_session_principal, ctx, cookie)
    # An unknown or expired session: the bearer path's refusal, rate limit included.
    return principal if principal is not None else await authenticate(connection)


AttachCaller = Annotated[Principal, Depends(attach_caller)]
