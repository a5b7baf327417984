"""Operator roles, tokens hashed at rest, rate limits, dashboard sessions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from overlord import invalidation
from overlord.auth import service as auth_service
from overlord.auth.models import ApiKey, KeyRole
from overlord.auth.ratelimit import RateLimiter
from overlord.auth.service import Principal
from overlord.cache import TTLCache
from overlord.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from overlord.errors import Forbidden
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
    ctx = overlord.ctx
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
    overlord.client.post("/dashboard/logout")
    assert overlord.client.get("/dashboard", follow_redirects=False).status_code == 303


def test_cached_credentials_are_trusted_long_only_while_revocations_are_heard(database_url, repo):
    overlord = make_overlord(database_url, repo)  # not started: no keeper thread runs
    ctx = overlord.ctx
    ctx.keeper.live = False
    assert ctx.principal_max_age_s() == overlord.settings.auth_cache_ttl_s
    ctx.keeper.live = True
    assert ctx.principal_max_age_s() == overlord.settings.auth_cache_max_s
    ctx.principals.put("digest", "principal")  # type: ignore[arg-type]  # any value will do
    ctx.desired.put("dev-1", "state")  # type: ignore[arg-type]
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


def _key_with_expiry(url: str, role: KeyRole, expires_in_s: float) -> tuple[int, str]:
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            key, token = auth_service.create_key(
                session, role=role, expires_at=utcnow() + timedelta(seconds=expires_in_s)
            )
            return key.id, token
    finally:
        engine.dispose()


def _set_key(url: str, key_id: int, **values: object) -> None:
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            session.execute(update(ApiKey).where(ApiKey.id == key_id).values(**values))
    finally:
        engine.dispose()


@pytest.mark.parametrize("ending", ["expired", "revoked"])
def test_a_dashboard_session_ends_with_its_token(overlord: Overlord, ending: str):
    key_id, token = _key_with_expiry(overlord.settings.database_url, KeyRole.ADMIN, 60)
    login = overlord.client.post("/dashboard/login", data={"token": token}, follow_redirects=False)
    assert login.status_code == 303
    assert overlord.client.get("/dashboard", follow_redirects=False).status_code == 200
    # The token's minute passes (or an admin revokes it) while the session's 12 hours do not.
    column = "expires_at" if ending == "expired" else "revoked_at"
    _set_key(overlord.settings.database_url, key_id, **{column: utcnow() - timedelta(seconds=1)})
    assert overlord.client.get("/dashboard", follow_redirects=False).status_code == 303


def test_a_token_cannot_mint_one_that_outlives_it(overlord: Overlord):
    _key_id, token = _key_with_expiry(overlord.settings.database_url, KeyRole.ADMIN, 600)
    brief_admin = {"Authorization": f"Bearer {token}"}
    for body in (
        {"role": "admin"},  # permanent
        {"role": "viewer", "expires_in_s": 3600},  # outlives the 10 minutes
        {"role": "enrollment"},
    ):
        resp = overlord.client.post("/api/v1/tokens", json=body, headers=brief_admin)
        assert resp.status_code == 403, body
        assert "hint" in resp.json()
    shorter = overlord.client.post(
        "/api/v1/tokens", json={"role": "viewer", "expires_in_s": 60}, headers=brief_admin
    )
    assert shorter.status_code == 201
    # A permanent admin may still mint permanent tokens.
    assert (
        overlord.client.post(
            "/api/v1/tokens", json={"role": "admin"}, headers=overlord.as_admin()
        ).status_code
        == 201
    )


@pytest.mark.parametrize(
    ("issuer", "role"),
    [
        (KeyRole.OPERATOR, KeyRole.ADMIN),
        (KeyRole.VIEWER, KeyRole.OPERATOR),
        (KeyRole.OPERATOR, KeyRole.ENROLLMENT),
        (KeyRole.ENROLLMENT, KeyRole.VIEWER),
        (KeyRole.DEVICE, KeyRole.VIEWER),
    ],
)
def test_a_token_cannot_mint_one_that_outranks_it(issuer: KeyRole, role: KeyRole):
    with pytest.raises(Forbidden):
        auth_service.grant(Principal(key_id=1, role=issuer), role=role, expires_at=None)
    auth_service.grant(Principal(key_id=1, role=KeyRole.ADMIN), role=role, expires_at=None)


def test_the_json_api_refuses_the_dashboard_cookie(overlord: Overlord):
    """A browser sends the cookie with any request, so only the dashboard's forms take it."""
    login = overlord.client.post(
        "/dashboard/login", data={"token": overlord.admin}, follow_redirects=False
    )
    assert login.status_code == 303 and overlord.client.cookies.get("overlord_session")
    evil = {"Origin": "https://evil.example"}
    assert overlord.client.get("/api/v1/devices", headers=evil).status_code == 401
    assert overlord.client.post("/api/v1/rollouts/1/pause", headers=evil).status_code == 401
    created = overlord.client.post("/api/v1/tokens", json={"role": "admin"}, headers=evil)
    assert created.status_code == 401
