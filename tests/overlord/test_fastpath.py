"""The fast path answers exactly like the FastAPI routes it stands in front of."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from tests.overlord.conftest import Overlord, heartbeat, make_overlord
from tests.overlord.test_device_signatures import _enrol, _signed
from tests.overlord.tufrepo import Repo


@pytest.fixture
def pair(database_url: str, repo: Repo) -> Iterator[tuple[Overlord, Overlord]]:
    """The same database served with and without the fast path (long-lived caches).

    Credentials are cached here even where revocations cannot be heard (SQLite), which the
    defaults do not do, so that the fast path answers on both backends.
    """
    caches = {"cache_ttl_s": 3600, "auth_cache_ttl_s": 3600}
    fast = make_overlord(database_url, repo, **caches)
    routes = make_overlord(database_url, repo, fast_path=False, **caches)
    with fast.client, routes.client:
        yield fast, routes


def _counting(monkeypatch: pytest.MonkeyPatch, overlord: Overlord) -> list[bool]:
    """For each request from now on: whether the fast path answered it (True) or handed it on."""
    answered: list[bool] = []
    path = overlord.app.fast_path
    assert path is not None
    handle = path.handle

    async def counting(scope, receive, send):
        handed_on = await handle(scope, receive, send)
        answered.append(handed_on is None)
        return handed_on

    monkeypatch.setattr(path, "handle", counting)
    return answered


def _answer(client: TestClient, method: str, url: str, **kwargs: Any) -> tuple[object, ...]:
    resp = client.request(method, url, **kwargs)
    # Per request by design: the date and the request id (overlord.requestlog).
    varying = {"date", "server", "x-request-id"}
    headers = {k: v for k, v in resp.headers.items() if k not in varying}
    return resp.status_code, headers, resp.content


def test_fast_path_answers_like_the_routes(pair: tuple[Overlord, Overlord], monkeypatch):
    fast, routes = pair
    ctx = fast.ctx
    answered = _counting(monkeypatch, fast)
    device_id, auth = fast.enroll("FP1")
    other_id, other_auth = fast.enroll("FP2")
    state = f"/api/v1/devices/{device_id}/desired-state"
    beat = f"/api/v1/devices/{device_id}/heartbeat"
    for client in (fast.client, routes.client):  # warm both replicas' caches
        client.get(state, headers=auth)
    etag = fast.client.get(state, headers=auth).headers["etag"]
    good = json.dumps(heartbeat()).encode()
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", state, {"headers": auth}),
        ("GET", state, {"headers": auth | {"If-None-Match": etag}}),
        ("GET", state, {"headers": auth | {"If-None-Match": f'"other", {etag}'}}),
        ("GET", state, {"headers": auth | {"If-None-Match": '"other"'}}),
        ("GET", state, {"headers": other_auth}),  # another device's credential
        ("GET", state, {"headers": {"Authorization": "Bearer nope"}}),
        ("POST", beat, {"headers": auth | json_type, "content": good}),
        ("POST", beat, {"headers": auth | json_type, "content": b"{not json"}),
        ("POST", beat, {"headers": auth | json_type, "content": b'{"image_version": "1"}'}),
        ("POST", beat, {"headers": auth | {"Content-Type": "text/plain"}, "content": good}),
        ("POST", f"/api/v1/devices/{other_id}/heartbeat", {"headers": auth | json_type}),
    ]
    for method, url, kwargs in cases:
        ours = _answer(fast.client, method, url, **kwargs)
        theirs = _answer(routes.client, method, url, **kwargs)
        assert ours == theirs, (method, url, kwargs)
    assert ctx.desired.get(device_id, max_age_s=None) is not None
    # The cached polls (the ETag fetch, 200s and 304s) and the valid heartbeat never reached
    # the router; everything else did.
    assert answered.count(True) == 6


def test_fast_path_answers_signed_requests_like_the_routes(
    pair: tuple[Overlord, Overlord], monkeypatch
):
    """A key-bound device (ADR 0075) is served here too once its signature holds; a bad,
    missing or replayed signature is handed to the routes, which refuse it and log it once."""
    fast, routes = pair
    answered = _counting(monkeypatch, fast)
    key = Ed25519PrivateKey.generate()
    enrolled = _enrol(fast, "FPK", key)
    assert enrolled.status_code == 201, enrolled.text
    device_id, token = enrolled.json()["device_id"], enrolled.json()["device_token"]
    state = f"/api/v1/devices/{device_id}/desired-state"
    beat = f"/api/v1/devices/{device_id}/heartbeat"
    # The first signed request on each replica records key_proved_at (the routes do that).
    for client in (fast.client, routes.client):
        assert client.get(state, headers=_signed(key, token, "GET", state)).status_code == 200
    etag = fast.client.get(state, headers=_signed(key, token, "GET", state)).headers["etag"]
    good = json.dumps(heartbeat()).encode()
    poll = _signed(key, token, "GET", state)
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", state, {"headers": poll}),
        ("GET", state, {"headers": poll}),  # the same signature again: a replay
        ("GET", state, {"headers": _signed(key, token, "GET", state) | {"If-None-Match": etag}}),
        ("GET", state, {"headers": {"Authorization": f"Bearer {token}"}}),  # the token alone
        ("GET", state, {"headers": _signed(Ed25519PrivateKey.generate(), token, "GET", state)}),
        ("POST", beat, {"headers": _signed(key, token, "POST", beat, good), "content": good}),
        ("POST", beat, {"headers": _signed(key, token, "POST", beat, b"{}"), "content": good}),
    ]
    answered.clear()
    statuses = []
    for method, url, kwargs in cases:
        ours = _answer(fast.client, method, url, **kwargs)
        theirs = _answer(routes.client, method, url, **kwargs)
        assert ours == theirs, (method, url, kwargs)
        statuses.append(ours[0])
    assert statuses == [200, 401, 304, 401, 401, 204, 401]
    # The fresh signed poll, the 304 and the signed heartbeat never reached the router.
    assert answered == [True, False, True, False, False, True, False]
