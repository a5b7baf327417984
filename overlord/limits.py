"""Request body limits, enforced before any route (or the fast path) reads a byte.

A body is read whole by FastAPI before authentication runs, so without a limit an
unauthenticated 100 MB register body cost the server over a gigabyte. Every route class has
a cap: the release publish upload (streamed to disk by its route) gets
``max_publish_bytes``, everything else ``max_json_bytes``. A declared ``Content-Length``
over the cap is answered 413 at once; a chunked body is counted as it arrives and the
request is answered 413 when it passes the cap (the app then sees the client leave).
nginx sets the same caps per location.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetcore.wire import API_PREFIX

PUBLISH_PATH = f"{API_PREFIX}/tuf/publish"


def _answer(status: int, detail: str) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    def __init__(self, app: ASGIApp, *, json_bytes: int, publish_bytes: int) -> None:
        self.app = app
        self.json_bytes = json_bytes
        self.publish_bytes = publish_bytes

    def cap(self, path: str) -> int:
        return self.publish_bytes if path == PUBLISH_PATH else self.json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._send(send, 400, "Content-Length is not a number")
                return
            if int(declared) > cap:
                await self._send(send, 413, f"request body larger than {cap} bytes")
                return
        seen = 0
        started = answered = False

        async def counted() -> Message:
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    # Answer here, then tell the app the client left: whatever it was
                    # doing with the body (FastAPI turns a failing read into a 400) stops.
                    answered = True
                    if not started:
                        await self._send(send, 413, f"request body larger than {cap} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, tracked)

    @staticmethod
    async def _send(send: Send, status: int, detail: str) -> None:
        start, body = _answer(status, detail)
        await send(start)
        await send(body)
