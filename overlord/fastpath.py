"""The two requests every device makes all day, answered below the FastAPI router.

``GET /api/v1/devices/{id}/desired-state`` and ``POST /api/v1/devices/{id}/heartbeat`` are
most of the Overlord's traffic. When the caller's credential and (for a poll) its desired
state are already in this replica's caches, they are answered here from the raw ASGI scope:
no routing, no dependency tree, no thread hop; a 304 is a string compare. Everything else,
including every error that needs no database (unknown token, another device's id, over the
rate, invalid body), is handed to the FastAPI routes unchanged, which give exactly the same
answers (``test_fast_path_answers_like_the_routes``); a consumed body is replayed to them.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from prometheus_client.metrics import Histogram
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from fleetcore import httpsig
from fleetcore.wire import API_PREFIX, Heartbeat
from overlord.auth import signatures
from overlord.auth.deps import cached_principal
from overlord.auth.models import KeyRole
from overlord.auth.service import Principal
from overlord.auth.tokens import digest
from overlord.errors import RETRY_HINT, DatabaseUnavailable, RequestError, error_body
from overlord.jsonbody import SCOPE_KEY

if TYPE_CHECKING:
    from overlord.context import AppContext

_DEVICES = f"{API_PREFIX}/devices/"
_ROUTE_STATE = f"{API_PREFIX}/devices/{{device_id}}/desired-state"
_ROUTE_BEAT = f"{API_PREFIX}/devices/{{device_id}}/heartbeat"
MAX_BODY = 64 * 1024
_NO_CACHE = (b"cache-control", b"no-cache")


class FastPath:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._observers: dict[tuple[str, str, int], Histogram] = {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the request and return None, or return the ``receive`` to hand it on with."""
        path: str = scope["path"]
        if not path.startswith(_DEVICES):
            return receive
        device_id, _, action = path[len(_DEVICES) :].partition("/")
        method = scope["method"]
        if action == "desired-state" and method == "GET":
            route = _ROUTE_STATE
        elif action == "heartbeat" and method == "POST":
            route = _ROUTE_BEAT
        else:
            return receive
        headers = dict(scope["headers"])
        principal = self._principal(device_id, headers.get(b"authorization"))
        if principal is None:
            return receive
        started = time.perf_counter()
        if route is _ROUTE_STATE:
            here, signed = self._signature(principal, device_id, scope, b"")
            if not here:
                return receive
            status = await self._desired_state(device_id, headers, send, signed)
            if status is None:
                return receive
        else:
            messages = await _read_body(receive)
            body = _whole_body(messages)
            # The edge (overlord.jsonbody) parsed the body strictly and left it in the scope.
            if body is None or SCOPE_KEY not in scope:
                return _replay(messages, receive)
            here, signed = self._signature(principal, device_id, scope, body)
            if not here:
                return _replay(messages, receive)
            try:
                heartbeat = Heartbeat.model_validate(scope[SCOPE_KEY])
            except ValidationError:  # the route renders the 422
                return _replay(messages, receive)
            if not self._ctx.device_limiter.allow(device_id) or not self._claimed(signed):
                return _replay(messages, receive)
            client = scope.get("client")
            heartbeat = self._ctx.exporters.screen(
                device_id, heartbeat, client_host=client[0] if client else None
            )
            status = await self._heartbeat(device_id, heartbeat, send)
        self._observe(method, route, status, time.perf_counter() - started)
        return None

    def _principal(self, device_id: str, authorization: bytes | None) -> Principal | None:
        """The cached credential when it is this device's own; None hands the request on."""
        if authorization is None or authorization[:7].lower() != b"bearer ":
            return None
        token = authorization[7:].strip().decode("latin-1")
        principal = cached_principal(self._ctx, digest(token)) if token else None
        if principal is None or principal.role is not KeyRole.DEVICE:
            return None
        return principal if principal.device_id == device_id else None

    def _signature(
        self, principal: Principal, device_id: str, scope: Scope, body: bytes
    ) -> tuple[bool, httpsig.Parsed | None]:
        """(whether to answer here, the signature to claim when answering) for a key-bound
        device (ADR 0075). A signature that does not hold is handed on, so that the routes
        refuse it and log it once; so is a request due to record ``key_proved_at``."""
        if principal.public_key is None:
            return True, None
        ctx = self._ctx
        if ctx.seen_signatures.proof_pending(device_id, time.time()):
            return False, None
        try:
            signed = signatures.signature_of(
                scope,
                Headers(scope=scope),
                public_key=principal.public_key,
                body=body,
                window_s=ctx.settings.device_signature_window_s,
            )
        except httpsig.SignatureError:
            return False, None
        return True, signed

    def _claimed(self, signed: httpsig.Parsed | None) -> bool:
        """Take the signature as used just before answering; a replay is handed on (401)."""
        window_s = self._ctx.settings.device_signature_window_s
        return signed is None or signatures.claim(self._ctx.seen_signatures, signed, window_s)

    async def _desired_state(
        self,
        device_id: str,
        headers: dict[bytes, bytes],
        send: Send,
        signed: httpsig.Parsed | None,
    ) -> int | None:
        ctx = self._ctx
        state = ctx.desired.get(device_id, max_age_s=ctx.settings.cache_ttl_s)
        # The rate limit is taken only for requests answered here (an empty bucket is
        # handed on, and the route answers 429 without taking a second token).
        if state is None or not ctx.device_limiter.allow(device_id) or not self._claimed(signed):
            return None
        if_none_match = headers.get(b"if-none-match")
        etag = (b"etag", state.etag.encode())
        if state.matches(if_none_match.decode("latin-1") if if_none_match else None):
            await _respond(send, 304, [etag, _NO_CACHE])
            return 304
        length = (b"content-length", str(len(state.body)).encode())
        content_type = (b"content-type", b"application/json")
        await _respond(send, 200, [length, content_type, etag, _NO_CACHE], state.body)
        return 200

    async def _heartbeat(self, device_id: str, heartbeat: Heartbeat, send: Send) -> int:
        try:
            await self._ctx.heartbeats.submit(device_id, heartbeat)
        except DatabaseUnavailable as err:
            self._ctx.mark_database_down()
            return await _error(send, 503, error_body(err, RETRY_HINT))
        except RequestError as err:
            return await _error(send, err.status_code, error_body(err, err.hint))
        await _respond(send, 204, [])
        return 204

    def _observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        observer = self._observers.get(key)
        if observer is None:
            observer = self._ctx.metrics.request_duration.labels(
                method=method, route=route, status=str(status)
            )
            self._observers[key] = observer
        observer.observe(seconds)


async def _read_body(receive: Receive) -> list[Message]:
    """The request's messages up to the end of its body, a disconnect, or ``MAX_BODY``."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if size > MAX_BODY or not message.get("more_body", False):
            return messages


def _whole_body(messages: list[Message]) -> bytes | None:
    last = messages[-1]
    if last["type"] != "http.request" or last.get("more_body", False):
        return None
    return b"".join(m.get("body", b"") for m in messages)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that yields the messages already read first, then the original stream."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, body: dict[str, object]) -> int:
    content = json.dumps(body, separators=(",", ":")).encode()
    headers = [(b"content-length", str(len(content)).encode())]
    headers.append((b"content-type", b"application/json"))
    if status == 503:
        headers.append((b"retry-after", b"5"))
    await _respond(send, status, headers, content)
    return status
