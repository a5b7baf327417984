"""Reading the audit log (operator or admin); nothing in the API updates or deletes it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleetcore.bounded import INT64_MAX, NUL_FREE, UtcDatetime
from fleetcore.wire import API_PREFIX
from overlord.audit import service
from overlord.audit.models import NAME_CHARS, OBJECT_ID_CHARS, AuditAction, AuditObject
from overlord.audit.schemas import AuditEntryPublic, AuditPage
from overlord.auth.deps import Operator
from overlord.deps import DbSession

router = APIRouter(prefix=API_PREFIX, tags=["audit"])
_OBJECT = rf"^({'|'.join(o.value for o in AuditObject)})(/[^\x00]{{1,{OBJECT_ID_CHARS}}})?$"


ActorQuery = Annotated[
    str | None,
    Query(
        max_length=NAME_CHARS,
        pattern=NUL_FREE,
        description="a key's name, or its id (digits match either)",
    ),
]
CursorQuery = Annotated[
    int | None, Query(ge=1, le=INT64_MAX, description="next_cursor of the previous page")
]


@router.get("/audit", response_model=AuditPage)
def list_audit(
    _caller: Operator,
    session: DbSession,
    actor: ActorQuery = None,
    action: Annotated[AuditAction | None, Query()] = None,
    object_: Annotated[
        str | None,
        Query(
            alias="object",
            max_length=len("alert_rule/") + OBJECT_ID_CHARS,
            pattern=_OBJECT,
            description="an object type (rollout) or one object (rollout/12, device/abc)",
        ),
    ] = None,
    since: Annotated[UtcDatetime | None, Query(description="at or after this time")] = None,
    until: Annotated[UtcDatetime | None, Query(description="before this time")] = None,
    cursor: CursorQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """Who did what, newest first; keyset pages (``cursor``) stay stable while entries arrive."""
    object_type, object_id = service.parse_object(object_ or "")
    rows, next_cursor = service.list_entries(
        session,
        filters=service.AuditFilter(
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            since=since,
            until=until,
        ),
        cursor=cursor,
        limit=limit,
    )
    return AuditPage(
        items=[AuditEntryPublic.model_validate(r) for r in rows], next_cursor=next_cursor
    )
