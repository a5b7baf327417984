"""Every JSON request body is parsed once, strictly, before the fast path or a route sees it.

FastAPI parses bodies with the standard library, which keeps the last of two equal keys,
turns ``NaN`` and ``Infinity`` into floats and passes lone UTF-16 surrogates on; those then
fail much later (a float column, a JSONB cast, a UTF-8 encode) as a 500. Here a body with a
JSON content type goes through :func:`fleetcore.strictjson.loads` first: a defect is one 422
that quotes nothing of the body, and a valid body reaches the routes unchanged (the
standard parser reads a strict document the same way). The parsed document is left in the
scope so the heartbeat fast path does not parse it again.
"""

from __future__ import annotations

import email.message
import json

from starlette.types import Message, Receive, Scope, Send

from fleetcore import strictjson
from fleetcore.errors import FormatError

SCOPE_KEY = "overlord.json"


def is_json(content_type: bytes | None) -> bool:
    """The content types FastAPI parses as JSON (``application/json``, ``application/*+json``)."""
    if content_type is None:
        return False
    # The same parse as FastAPI's, so both agree on which bodies are JSON.
    message = email.message.Message()
    message["content-type"] = content_type.decode("latin-1")
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _header(scope: Scope, name: bytes) -> bytes | None:
    # The first occurrence, as Starlette's request.headers.get() reads it.
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


class StrictJson:
    """Parses JSON request bodies of at most ``max_bytes`` (larger ones are capped upstream)."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    async def check(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer 422 and return None, or return the ``receive`` that replays the body."""
        if not is_json(_header(scope, b"content-type")):
            return receive
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return _replay(messages, receive)  # the client left, or a limit answered
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return _replay(messages, receive)  # only the publish upload may be larger
            if not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages)
        if body:
            try:
                scope[SCOPE_KEY] = strictjson.loads(body, what="the request body")
            except FormatError as err:
                await _refuse(send, _reason(err))
                return None
        return _replay(messages, receive)


def _reason(err: FormatError) -> str:
    if isinstance(err, strictjson.DuplicateKeyError):
        return "the request body names a key twice"  # without the key: it is the client's input
    return str(err)[:200]


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _refuse(send: Send, reason: str) -> None:
    # The shape of FastAPI's own answer to a body that is not JSON.
    detail = [{"type": "json_invalid", "loc": ["body"], "msg": reason}]
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 422, "headers": headers})
    await send({"type": "http.response.body", "body": body})
