"""Operator roles, tokens hashed at rest, rate limits, dashboard sessions."""

from __future__ import annotations

from sqlalchemy import select

from overlord import invalidation
from overlord.auth.models import ApiKey, KeyRole
from overlord.auth.ratelimit import RateLimiter
from overlord.cache import TTLCache
from overlord.db import unit_of_work
from tests.overlord.conftest import Overlord, make_overlord


def test_roles_are_ordered(overlord: Overlord):
    viewer = {"Authorization": f"Bearer {overlord.token(KeyRole.VIEWER)}"}
    operator = {"Authorization": f"Bearer {overlord.token(KeyRole.OPERATOR)}"}
    enrollment = {"Authorization": f"Bearer {overlord.enrollment}"}
    assert overlord.client.get("/api/v1/devices", headers=viewer).status_code == 200
    assert overlord.client.get("/api/v1/devices", headers=enrollment).status_code == 403
    assert overlord.client.put("/api/v1/groups/lab", json={}, headers=viewer).status_code == 403
    assert overlord.client.put("/api/v1/groups/lab", json={}, headers=operator).status_code == 200
    assert overlord.client.get("/api/v1/tokens", headers=operator).status_code == 403
    assert overlord.client.get("/api/v1/tokens", headers=overlord.as_admin()).status_code == 200


def test_tokens_are_stored_only_as_digests(overlord: Overlord):
    resp = overlord.client.post(
        "/api/v1/tokens", json={"role": "viewer", "name": "ci"}, headers=overlord.as_admin()
    )
    assert resp.status_code == 201
    token = resp.json()["token"]
    ctx = overlord.client.app.state.ctx  # type: ignore[attr-defined]
    with unit_of_work(ctx.sessions) as session:
        hashes = list(session.scalars(select(ApiKey.token_hash)))
    assert token not in hashes and all(len(h) == 64 for h in hashes)
    assert (
        overlord.client.get(
            "/api/v1/devices", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )
    key_id = resp.json()["id"]
    assert (
        overlord.client.delete(f"/api/v1/tokens/{key_id}", headers=overlord.as_admin()).status_code
        == 204
    )
    assert (
        overlord.client.get(
            "/api/v1/devices", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 401
    )


def test_device_credentials_cannot_be_minted_through_the_api(overlord: Overlord):
    resp = overlord.client.post(
        "/api/v1/tokens", json={"role": "device"}, headers=overlord.as_admin()
    )
    assert resp.status_code == 422


def test_devices_are_rate_limited(database_url, repo):
    overlord = make_overlord(database_url, repo, device_rate_per_s=0.001, device_rate_burst=3)
    with overlord.client:
        device_id, auth = overlord.enroll("RL1")
        url = f"/api/v1/devices/{device_id}/desired-state"
        codes = [overlord.client.get(url, headers=auth).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]


def test_token_bucket_refills():
    limiter = RateLimiter(rate_per_s=1e9, burst=1)
    assert limiter.allow("a") and limiter.allow("a")
    empty = RateLimiter(rate_per_s=1e-9, burst=1)
    assert empty.allow("a") and not empty.allow("a") and empty.allow("b")


def test_dashboard_login_sets_a_session_cookie(overlord: Overlord):
    assert overlord.client.get("/dashboard", follow_redirects=False).status_code == 303
    bad = overlord.client.post("/dashboard/login", data={"token": "nope"}, follow_redirects=False)
    assert bad.status_code == 401
    enroll = overlord.client.post(
        "/dashboard/login", data={"token": overlord.enrollment}, follow_redirects=False
    )
    assert enroll.status_code == 401
    good = overlord.client.post(
        "/dashboard/login", data={"token": overlord.token(KeyRole.VIEWER)}, follow_redirects=False
    )
    assert good.status_code == 303
    assert "httponly" in good.headers["set-cookie"].lower()
    page = overlord.client.get("/dashboard")
    assert page.status_code == 200 and "Fleet by image version" in page.text
    # The session also authorises read-only API calls from the browser.
    assert overlord.client.get("/api/v1/devices").status_code == 200
    overlord.client.post("/dashboard/logout")
    assert overlord.client.get("/dashboard", follow_redirects=False).status_code == 303


def test_cached_credentials_are_trusted_long_only_while_revocations_are_heard(database_url, repo):
    overlord = make_overlord(database_url, repo)  # not started: no keeper thread runs
    ctx = overlord.client.app.state.ctx  # type: ignore[attr-defined]
    ctx.keeper.live = False
    assert ctx.principal_max_age_s() == overlord.settings.auth_cache_ttl_s
    ctx.keeper.live = True
    assert ctx.principal_max_age_s() == overlord.settings.auth_cache_max_s
    ctx.principals.put("digest", "principal")
    ctx.desired.put("dev-1", "state")
    ctx.keeper.handle(invalidation.credential("digest"))
    ctx.keeper.handle(invalidation.device("dev-1"))
    assert ctx.principals.get("digest", max_age_s=None) is None
    assert ctx.desired.get("dev-1", max_age_s=None) is None


def test_a_value_loaded_before_an_invalidation_is_not_cached():
    cache: TTLCache[str, str] = TTLCache()
    generation = cache.generation
    cache.drop("k")  # the invalidation arrives while the loader was reading the database
    cache.put("k", "stale", generation=generation)
    assert cache.get("k", max_age_s=None) is None
    cache.put("k", "fresh", generation=cache.generation)
    assert cache.get("k", max_age_s=None) == "fresh"
