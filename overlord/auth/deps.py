"""Who may call what: device credentials and operator roles (bearer tokens only)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from overlord.auth import service, signatures
from overlord.auth.models import KeyRole
from overlord.auth.service import Principal
from overlord.auth.tokens import digest
from overlord.context import AppContext
from overlord.db import unit_of_work, utcnow
from overlord.devices import service as devices_service
from overlord.devices.schemas import DeviceId
from overlord.errors import AuthError, DatabaseUnavailable, Forbidden, RateLimited

SESSION_COOKIE = "overlord_session"


def client_address(request: HTTPConnection) -> str:
    return request.client.host if request.client else "unknown"


def _load_principal(ctx: AppContext, key: str, token: str) -> Principal | None:
    """Resolve a token in the database; while it is down, trust this replica's last answer."""
    if not ctx.database_suspect():
        generation = ctx.principals.generation
        try:
            with unit_of_work(ctx.reads) as session:
                principal = service.resolve_token(session, token=token)
        except DatabaseUnavailable:
            ctx.mark_database_down()
        else:
            if principal is not None:
                ctx.principals.put(key, principal, generation=generation)
            return principal
    stale = ctx.principals.get(key, max_age_s=None)
    return None if stale is None or stale.expired() else stale


def cached_principal(ctx: AppContext, key: str) -> Principal | None:
    """A credential this replica resolved recently enough, and not expired since."""
    principal = ctx.principals.get(key, max_age_s=ctx.principal_max_age_s())
    if principal is None or principal.expired():
        return None
    return principal


def bearer_token(request: HTTPConnection) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def authenticate(request: HTTPConnection) -> Principal:
    """The caller behind a bearer token.

    The JSON API takes bearer tokens only, never the dashboard's session cookie: a browser
    attaches a cookie to any request, so a cookie-authenticated API would need the
    dashboard's Origin and CSRF checks on every route; the dashboard never calls the API.
    One flat, async dependency, so that the hot path (a cached token) costs no dependency
    tree and never leaves the event loop; database look-ups run in the thread pool.
    """
    ctx: AppContext = request.app.state.ctx
    principal = None
    token = bearer_token(request)
    if token is not None:
        key = digest(token)
        principal = cached_principal(ctx, key)
        if principal is None:
            principal = await run_in_threadpool(_load_principal, ctx, key, token)
    if principal is None:
        if not ctx.anonymous_limiter.allow(client_address(request)):
            raise RateLimited("too many unauthenticated requests")
        raise AuthError("a valid bearer token is required")
    return principal


Caller = Annotated[Principal, Depends(authenticate)]


def _record_proof(ctx: AppContext, device_id: str) -> None:
    """``devices.key_proved_at``; while the database is down the proof is simply not shown."""
    try:
        with unit_of_work(ctx.sessions) as session:
            devices_service.mark_proved(session, device_id=device_id, at=utcnow())
    except DatabaseUnavailable:
        ctx.mark_database_down()


async def device_caller(device_id: DeviceId, request: HTTPConnection) -> Principal:
    """A device credential, only for its own device, signed with its key if it has one.

    Takes an HTTPConnection so that a WebSocket route can depend on it too: a handshake has
    no body and is signed over an empty one.
    """
    caller = await authenticate(request)
    ctx: AppContext = request.app.state.ctx
    if caller.role is not KeyRole.DEVICE or caller.device_id != device_id:
        raise Forbidden("this credential is not the device's own")
    if caller.public_key is not None:
        body = await request.body() if isinstance(request, Request) else b""
        signatures.check(
            ctx.seen_signatures,
            request.scope,
            request.headers,
            device_id=device_id,
            public_key=caller.public_key,
            body=body,
            window_s=ctx.settings.device_signature_window_s,
        )
        if ctx.seen_signatures.proof_due(device_id, time.time()):
            await run_in_threadpool(_record_proof, ctx, device_id)
    if not ctx.device_limiter.allow(device_id):
        raise RateLimited(f"device {device_id} is over its request rate")
    return caller


DeviceCaller = Annotated[Principal, Depends(device_caller)]


def _require(role: KeyRole) -> object:
    async def check(caller: Caller) -> Principal:
        if not caller.at_least(role):
            raise Forbidden(f"this needs the {role.value} role or higher")
        return caller

    return Depends(check)


Viewer = Annotated[Principal, _require(KeyRole.VIEWER)]
Operator = Annotated[Principal, _require(KeyRole.OPERATOR)]
Admin = Annotated[Principal, _require(KeyRole.ADMIN)]
