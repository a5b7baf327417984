"""One log record per refused or failed request, tagged with the request's id.

The id comes from nginx (``X-Request-ID: $request_id``, so its access log and ours agree) or
is made here; it is answered in ``X-Request-ID`` and attached to every record logged while
the request is served (:data:`fleetcore.logs.request_id`), so an operator can follow one
request through nginx, the Overlord and its errors.

What is logged: method, path (never the query string), status, duration and client address;
never a header or a body, so never a token. Answers that signal misuse (400, 401, 403, 405,
413, 414, 415, 422, 429) are warnings, other 4xx are info, 5xx are errors.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetcore.logs import request_id

log = logging.getLogger("overlord.requests")

HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
MISUSE = frozenset({400, 401, 403, 405, 413, 414, 415, 422, 429})


def level_for(status: int) -> int | None:
    """The log level of an answer with ``status``; ``None`` for answers not logged."""
    if status >= 500:
        return logging.ERROR
    if status in MISUSE:
        return logging.WARNING
    if status >= 400:
        return logging.INFO
    return None


def _incoming_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER and _VALID_ID.fullmatch(value):
            return bytes(value).decode()
    return uuid.uuid4().hex


class RequestLog:
    """ASGI middleware; wraps the whole app so size limits and the fast path are covered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope)
        token = request_id.set(rid)
        start = time.perf_counter()
        status = 500

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        finally:
            level = level_for(status)
            if level is not None:
                client = scope.get("client")
                log.log(
                    level,
                    "%s %s answered %d",
                    scope.get("method", ""),
                    scope.get("path", "")[:256],
                    status,
                    extra={
                        "status": status,
                        "duration_ms": round((time.perf_counter() - start) * 1000, 1),
                        "client": client[0] if client else "",
                    },
                )
            request_id.reset(token)
