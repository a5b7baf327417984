"""Operator and enrollment tokens (admin only)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response, status

from fleetcore.wire import API_PREFIX
from overlord.audit.deps import AdminActor
from overlord.auth import service
from overlord.auth.deps import Admin
from overlord.auth.models import KeyRole
from overlord.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from overlord.db import utcnow
from overlord.deps import Ctx, DbSession
from overlord.errors import InvalidRequest
from overlord.ids import RowId

router = APIRouter(prefix=f"{API_PREFIX}/tokens", tags=["auth"])


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_token(
    body: ApiKeyCreate, caller: Admin, actor: AdminActor, session: DbSession
) -> ApiKeyCreated:
    if body.role is KeyRole.DEVICE:
        raise InvalidRequest("device credentials come from enrolment, not from this endpoint")
    expires = utcnow() + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    service.grant(caller, role=body.role, expires_at=expires)
    key, token = service.issue_key(
        session, role=body.role, name=body.name, expires_at=expires, actor=actor
    )
    return ApiKeyCreated(**ApiKeyPublic.model_validate(key).model_dump(), token=token)


@router.get("", response_model=list[ApiKeyPublic])
def list_tokens(_caller: Admin, session: DbSession) -> list[ApiKeyPublic]:
    return [ApiKeyPublic.model_validate(k) for k in service.list_keys(session)]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(key_id: RowId, actor: AdminActor, ctx: Ctx, session: DbSession) -> Response:
    service.revoke_key(session, key_id=key_id, actor=actor)
    ctx.principals.clear()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
