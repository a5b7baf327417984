"""The baselines of bench_load.py and bench_overlord.py, on the same uvicorn settings.

``app`` is a bare FastAPI app answering the load generator's requests without any work
(register 201, heartbeat 204, desired state 200 then 304 by ETag); ``asgi_app`` answers
heartbeats and polls the same way as a bare ASGI callable, with no framework at all. The
ratio to them says how much of this machine's HTTP ceiling the Overlord reaches. Served with
``uvicorn load_baseline:app`` (or ``:asgi_app``) from bench/.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import FastAPI, Header, Response
from starlette.types import Receive, Scope, Send

app = FastAPI()
ETAG = '"baseline"'


@app.get("/health")
def health() -> Response:
    return Response(status_code=200)


@app.post("/api/v1/devices/register", status_code=201)
def register() -> dict[str, str]:
    return {"device_id": uuid.uuid4().hex, "device_token": "baseline"}


@app.post("/api/v1/devices/{device_id}/heartbeat", status_code=204)
def heartbeat(device_id: str) -> Response:
    return Response(status_code=204)


@app.get("/api/v1/devices/{device_id}/desired-state")
def desired_state(
    device_id: str, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    if if_none_match == ETAG:
        return Response(status_code=304, headers={"ETag": ETAG})
    return Response(content=b"{}", media_type="application/json", headers={"ETag": ETAG})


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The same answers as a bare ASGI callable: the ceiling of the server stack itself."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    path: str = scope["path"]
    headers = [(b"etag", ETAG.encode())]
    if path.endswith("/heartbeat"):
        status, headers, body = 204, [], b""
    elif path.endswith("/desired-state") and (b"if-none-match", ETAG.encode()) in scope["headers"]:
        status, body = 304, b""
    else:
        status, body = 200, b"{}"
        headers += [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
