"""Credentials and dashboard sessions."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session

from overlord import invalidation
from overlord.audit import service as audit
from overlord.audit.models import AuditAction, AuditObject
from overlord.audit.service import Actor
from overlord.auth.models import OPERATOR_RANK, ApiKey, DashboardSession, KeyRole
from overlord.auth.tokens import digest, new_token
from overlord.db import utcnow
from overlord.errors import Forbidden, NotFound


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's role and name, and for a device credential, its device."""

    key_id: int
    role: KeyRole
    device_id: str | None = None
    expires_at: datetime | None = None
    name: str = ""
    # The raw ed25519 key a device credential's requests must be signed with (ADR 0075).
    public_key: bytes | None = None

    def at_least(self, role: KeyRole) -> bool:
        return OPERATOR_RANK.get(self.role, 0) >= OPERATOR_RANK[role]

    def expired(self) -> bool:
        """Checked on every cached use too, so a cached credential never outlives its key."""
        return self.expires_at is not None and self.expires_at <= utcnow()


def create_key(
    session: Session,
    *,
    role: KeyRole,
    name: str = "",
    device_id: str | None = None,
    expires_at: datetime | None = None,
    public_key: str | None = None,
) -> tuple[ApiKey, str]:
    """A new credential; the token is returned once and only its digest is stored."""
    token = new_token(role)
    key = ApiKey(
        token_hash=digest(token),
        role=role,
        name=name,
        device_id=device_id,
        expires_at=expires_at,
        public_key=public_key,
    )
    session.add(key)
    session.flush()
    return key, token


def issue_key(
    session: Session, *, role: KeyRole, name: str, expires_at: datetime | None, actor: Actor
) -> tuple[ApiKey, str]:
    """An operator's new credential (audited); the token is returned once, never recorded."""
    key, token = create_key(session, role=role, name=name, expires_at=expires_at)
    audit.record(
        session,
        actor,
        AuditAction.TOKEN_CREATE,
        object_type=AuditObject.TOKEN,
        object_id=key.id,
        after=_key_fields(key),
    )
    return key, token


def _key_fields(key: ApiKey) -> dict[str, object]:
    return {
        "role": key.role,
        "name": key.name,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }


def grant(issuer: Principal, *, role: KeyRole, expires_at: datetime | None) -> None:
    """Raise Forbidden unless ``issuer`` may mint a ``role`` token expiring at ``expires_at``.

    A credential never creates one that outranks it or outlives it, so a short-lived or
    revoked authority cannot be laundered into a lasting one.
    """
    if not issuer.at_least(role if role in OPERATOR_RANK else KeyRole.ADMIN):
        raise Forbidden(f"a {issuer.role.value} credential cannot create a {role.value} token")
    if issuer.expires_at is None:
        return
    if expires_at is None or expires_at > issuer.expires_at:
        raise Forbidden(
            "a token cannot outlive the credential that creates it",
            hint=f"ask for an expiry at or before {issuer.expires_at.isoformat()}",
        )


def resolve_token(session: Session, *, token: str) -> Principal | None:
    key = session.scalar(select(ApiKey).where(ApiKey.token_hash == digest(token)))
    if key is None or key.revoked_at is not None:
        return None
    principal = Principal(
        key_id=key.id,
        role=key.role,
        device_id=key.device_id,
        expires_at=key.expires_at,
        name=key.name,
        public_key=base64.b64decode(key.public_key) if key.public_key else None,
    )
    return None if principal.expired() else principal


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def _revoke(session: Session, *conditions: ColumnElement[bool]) -> int:
    """Revoke matching active keys and tell every replica to forget them at commit."""
    digests = list(
        session.scalars(
            update(ApiKey)
            .where(ApiKey.revoked_at.is_(None), *conditions)
            .values(revoked_at=utcnow())
            .returning(ApiKey.token_hash)
        )
    )
    for token_hash in digests:
        invalidation.announce(session, invalidation.credential(token_hash))
    return len(digests)


def revoke_key(session: Session, *, key_id: int, actor: Actor) -> None:
    key = session.get(ApiKey, key_id)
    before = None if key is None else _key_fields(key)
    if key is None or _revoke(session, ApiKey.id == key_id) == 0:
        raise NotFound(f"no active key {key_id}")
    session.refresh(key)
    audit.record(
        session,
        actor,
        AuditAction.TOKEN_REVOKE,
        object_type=AuditObject.TOKEN,
        object_id=key_id,
        before=before,
        after=_key_fields(key),
    )


def revoke_device_keys(session: Session, *, device_id: str) -> None:
    _revoke(session, ApiKey.device_id == device_id)


def rebind_public_key(session: Session, *, key_id: int, public_key: str) -> None:
    """Bind a device credential to a new key; every replica forgets the old one at commit."""
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        raise NotFound("the credential was revoked meanwhile")
    key.public_key = public_key
    invalidation.announce(session, invalidation.credential(key.token_hash))


def open_session(session: Session, *, principal: Principal, ttl_s: int) -> str:
    """A dashboard session for an operator key, ending no later than the key; the cookie."""
    cookie = secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=ttl_s)
    if principal.expires_at is not None:
        expires_at = min(expires_at, principal.expires_at)
    session.add(
        DashboardSession(
            session_hash=digest(cookie), api_key_id=principal.key_id, expires_at=expires_at
        )
    )
    return cookie


def resolve_session(session: Session, *, cookie: str) -> Principal | None:
    row = session.execute(
        select(ApiKey, DashboardSession.expires_at)
        .join(DashboardSession, DashboardSession.api_key_id == ApiKey.id)
        .where(DashboardSession.session_hash == digest(cookie))
    ).first()
    if row is None:
        return None
    key, session_expires_at = row
    if key.revoked_at is not None:
        return None
    # The session is the key's authority for a while, never beyond the key's own expiry.
    expires_at = session_expires_at
    if key.expires_at is not None:
        expires_at = min(expires_at, key.expires_at)
    principal = Principal(key_id=key.id, role=key.role, expires_at=expires_at, name=key.name)
    return None if principal.expired() else principal


def close_session(session: Session, *, cookie: str) -> None:
    session.execute(delete(DashboardSession).where(DashboardSession.session_hash == digest(cookie)))
