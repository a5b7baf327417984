"""The baseline of bench_load.py: a bare FastAPI app on the same uvicorn settings.

It answers the load generator's three requests without any work (register 201, heartbeat
204, desired state 200 then 304 by ETag), so the ratio to it says how much of this machine's
HTTP ceiling the Overlord reaches. Served with ``uvicorn load_baseline:app`` from bench/.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import FastAPI, Header, Response

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
